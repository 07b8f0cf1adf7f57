"""Validate one entity's extract: the rows to send and the rows to reject, with every rule they broke.

`validate_into` follows the same steps (the contract's "Validation" section; the rules are in
`mogulflow.validate.rules`), one chunk of the extract at a time for all but the reduction of duplicates:

1. normalise: keep the contract's source columns; texts stripped, blank → missing; timestamps
   tz-aware UTC; integers nullable; `country` and `currency` upper-cased;
2. reduce rows sharing an id to the one with the latest `updated_at` (conversions: `converted_at`);
   on a tie, the row that comes later in the extract wins; the others are rejected as duplicates;
3. validate the remaining rows with a pandera schema, lazily, so that every broken rule of every row
   is collected (rows without an id included: they are rejected with a null `source_id`).

Everything is vectorised; `RejectedRow` objects are built for the failing rows only. The
`validate_<entity>` functions return the valid rows as one frame; the DAG's steps stage them to
Parquet chunk by chunk instead (`validate_into` with a `mogulflow.warehouse.staging.ValidParts`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mogulflow.extract.source_tables import (
    CONVERSIONS,
    LEAD_ATTRIBUTES,
    LEAD_TAGS,
    LEADS,
    PLANS,
    TRIALS,
    SourceTable,
)
from mogulflow.validate.rules import (
    COMMON_EMAIL,
    PRESENT,
    Rule,
    attribute_rules,
    conversion_rules,
    is_valid_email,
    lead_rules,
    plan_rules,
    tag_rules,
    trial_rules,
)
from mogulflow.values.constants import IDENTITY_SEPARATOR
from mogulflow.values.entities import Entity
from mogulflow.values.id_arrays import KnownIds, as_id_array, group_ids, id_hashes
from mogulflow.values.rejected_rows import RejectedRow, RuleFailure, RuleKind, ValidationResult

__all__ = [
    "COMMON_EMAIL",
    "IDENTITY_SEPARATOR",
    "ValidSink",
    "Validation",
    "attribute_rules",
    "conversion_rules",
    "is_valid_email",
    "lead_rules",
    "plan_rules",
    "tag_rules",
    "trial_rules",
    "validate_attributes",
    "validate_conversions",
    "validate_into",
    "validate_leads",
    "validate_plans",
    "validate_tags",
    "validate_trials",
]

# One extract: a frame, or its chunks in order.
Extract = pd.DataFrame | Iterable[pd.DataFrame]


def validate_leads(frame: Extract, *, now: datetime) -> ValidationResult:
    """Validate extracted `leads` rows, in memory."""
    return _validate(frame, LEADS, lead_rules(now))


def validate_plans(frame: Extract, *, now: datetime) -> ValidationResult:
    """Validate extracted `plans` rows, in memory."""
    return _validate(frame, PLANS, plan_rules(now))


def validate_trials(
    frame: Extract,
    *,
    now: datetime,
    known_lead_ids: Collection[str],
    known_plan_ids: Collection[str],
) -> ValidationResult:
    """Validate extracted `trials` rows, in memory (`known_*_ids`: see `trial_rules`)."""
    rules = trial_rules(now, known_lead_ids=known_lead_ids, known_plan_ids=known_plan_ids)
    return _validate(frame, TRIALS, rules)


def validate_conversions(
    frame: Extract, *, now: datetime, known_lead_ids: Collection[str]
) -> ValidationResult:
    """Validate extracted `conversions` rows, in memory (`known_lead_ids`: see `conversion_rules`)."""
    return _validate(frame, CONVERSIONS, conversion_rules(now, known_lead_ids=known_lead_ids))


def validate_attributes(
    frame: Extract, *, now: datetime, known_lead_ids: Collection[str]
) -> ValidationResult:
    """Validate extracted `lead_attributes` rows, in memory (`known_lead_ids`: see `attribute_rules`)."""
    return _validate(frame, LEAD_ATTRIBUTES, attribute_rules(now, known_lead_ids=known_lead_ids))


def validate_tags(frame: Extract, *, now: datetime, known_lead_ids: Collection[str]) -> ValidationResult:
    """Validate extracted `lead_tags` rows, in memory (`known_lead_ids`: see `tag_rules`)."""
    return _validate(frame, LEAD_TAGS, tag_rules(now, known_lead_ids=known_lead_ids))


# --- the steps -----------------------------------------------------------------------------------


class ValidSink(Protocol):
    """Where `validate_into` puts the rows that pass every row-local rule, one part per chunk.

    Whether a row survives the reduction of duplicates is known only once the whole extract has
    been seen: `drop` then takes the losers out of a part already handed over.
    """

    def append(self, frame: pd.DataFrame) -> None:
        """Take the next part (possibly empty)."""

    def drop(self, part: int, rows: np.ndarray) -> None:
        """Take the rows at these positions (ascending) out of part number `part`."""


@dataclass(frozen=True)
class Validation:
    """What `validate_into` found; the valid rows themselves went to its sink."""

    entity: Entity
    rejected: tuple[RejectedRow, ...]
    extracted: int
    valid: int
    ids: np.ndarray  # every extracted row's id, normalised, as `as_id_array` gives them
    id_hashes: np.ndarray  # their `id_hashes`
    is_valid: np.ndarray  # mask over `ids`

    def valid_ids(self) -> KnownIds:
        """The ids of the valid rows (distinct: duplicates were reduced)."""
        return KnownIds.of_distinct(self.ids[self.is_valid], self.id_hashes[self.is_valid])


class _Frames:
    """A `ValidSink` that keeps the parts in memory (what the `validate_<entity>` functions return)."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []

    def append(self, frame: pd.DataFrame) -> None:
        self.parts.append(frame)

    def drop(self, part: int, rows: np.ndarray) -> None:
        keep = np.ones(len(self.parts[part]), dtype=bool)
        keep[rows] = False
        self.parts[part] = self.parts[part].loc[keep].reset_index(drop=True)

    def frame(self) -> pd.DataFrame:
        return self.parts[0] if len(self.parts) == 1 else pd.concat(self.parts, ignore_index=True)


def _validate(frame: Extract, table: SourceTable, rules: Sequence[Rule]) -> ValidationResult:
    frames = _Frames()
    found = validate_into(frame, table, rules, frames)
    return ValidationResult(
        entity=table.entity, valid=frames.frame(), rejected=found.rejected, extracted=found.extracted
    )


def validate_into(chunks: Extract, table: SourceTable, rules: Sequence[Rule], sink: ValidSink) -> Validation:
    """Validate an extract chunk by chunk; the rows that pass go to `sink` as each chunk is done.

    Every rule but the reduction of duplicates is row-local, so each chunk is normalised and checked
    on its own and only its ids (as `as_id_array` and `id_hashes` give them: no Python object per
    id) and recency stay in memory: a million normalised leads never sit in memory at once.
    Duplicates are then decided over those small arrays; a losing row is rejected as a duplicate
    only (its other failures dropped) and taken out of the sink's part again.
    """
    id_column = table.entity.id_column
    ids: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    failures: list[pd.DataFrame] = []
    passed: list[np.ndarray] = []  # by part: the positions (in the extract) of the rows handed over
    first: pd.DataFrame | None = None
    identity_parts: list[np.ndarray] = []  # composite identities (tables with `identity`), for grouping
    extracted = 0
    for chunk in [chunks] if isinstance(chunks, pd.DataFrame) else chunks:
        data = _normalise_frame(chunk, table)
        if first is None:
            first = data
        if not len(data):
            continue  # an empty chunk adds nothing (the first one still gives an empty extract's columns)
        ids.append(as_id_array(data[id_column]))
        hashes.append(id_hashes(_identity(data, table)))
        if table.identity:
            identity_parts.append(as_id_array(_identity(data, table)))
        recency = data[table.recency]
        stamps.append(np.where(recency.isna(), _OLDEST, recency.to_numpy("int64", na_value=0)))
        broken = _broken_rules(data, table, rules)
        broken["position"] += extracted
        failures.append(broken)
        ok = np.ones(len(data), dtype=bool)
        ok[broken["position"].to_numpy(dtype=np.int64) - extracted] = False
        passed.append(extracted + np.flatnonzero(ok))
        sink.append(data.loc[ok].reset_index(drop=True))
        extracted += len(data)
        del data, recency, chunk  # before the next chunk comes in
    if first is None:
        raise ValueError(f"the {table.entity.value} extract gave no frame at all, not even an empty one")
    if not extracted:
        sink.append(first)
        ids.append(as_id_array(first[id_column]))
        hashes.append(id_hashes(_identity(first, table)))
        if table.identity:
            identity_parts.append(as_id_array(_identity(first, table)))

    identities = np.concatenate(identity_parts) if table.identity else None
    every_id, every_hash = np.concatenate(ids), np.concatenate(hashes)
    del ids, hashes
    every_stamp = np.concatenate(stamps) if stamps else np.empty(0, dtype=np.int64)
    winners, duplicates = _reduce_duplicates(every_id, every_hash, every_stamp, table, identities)
    broken = pd.concat([*failures, _NO_FAILURES], ignore_index=True)
    broken = broken[winners[broken["position"].to_numpy(dtype=np.int64)]]  # a loser is just a duplicate
    found = pd.concat([duplicates, broken], ignore_index=True)
    found = found.astype({"position": "int64", "order": "int64"}).sort_values(["position", "order"])
    rejected = _rejected_rows(table.entity, every_id, found)

    for part, positions in enumerate(passed):
        if len(losers := np.flatnonzero(~winners[positions])):
            sink.drop(part, losers)
    is_valid = winners.copy()
    is_valid[found["position"].to_numpy()] = False
    return Validation(table.entity, rejected, extracted, int(is_valid.sum()), every_id, every_hash, is_valid)


# One row per broken rule of a rejected row; `order` sorts a row's failures (column order, then rule order).
_FAILURE_COLUMNS = ["position", "order", "field", "rule", "found", "kind"]
_NO_FAILURES = pd.DataFrame(
    {"position": np.empty(0, np.int64), "order": np.empty(0, np.int64)}, columns=_FAILURE_COLUMNS
)
_OLDEST = np.iinfo(np.int64).min  # a missing recency: older than any


def _normalise_frame(frame: pd.DataFrame, table: SourceTable) -> pd.DataFrame:
    missing = [c for c in table.columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the {table.entity.value} extract lacks column(s) {', '.join(missing)}; "
            f"the extract SQL must return {', '.join(table.columns)}"
        )
    data = {}
    for column in table.columns:
        values = frame[column].reset_index(drop=True)
        if column in table.timestamps:
            data[column] = pd.to_datetime(values, utc=True).dt.as_unit("us")
        elif column in table.integers:
            data[column] = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif column in table.booleans:
            data[column] = _normalised_boolean(values)
        else:
            data[column] = _normalised_text(values, upper=column in table.upper_cased)
    return pd.DataFrame(data)


def _normalised_boolean(values: pd.Series) -> pd.Series:
    """A boolean column (nullable): true/false, 1/0 and their texts in any case; anything else missing."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    text = values.astype("str").str.strip().str.lower().where(values.notna())
    return text.map({"true": True, "false": False, "1": True, "0": False, "t": True, "f": False}).astype(
        "boolean"
    )


# Rows looked at to tell a column of mostly distinct values from one of few repeated values.
_CARDINALITY_SAMPLE = 10_000


def _normalised_text(values: pd.Series, *, upper: bool) -> pd.Series:
    """Stripped, blank → missing, optionally upper-cased.

    In a column of few distinct values each is normalised once and equal values share one string
    object: at a million rows `country` holds a handful of values, and an object per row costs ~55
    bytes.
    """
    text = values.astype("str")
    if text.dtype == object:  # pandas 2: "str" is object and a missing value became "None" or "nan"
        text = text.where(values.notna())
    if text.iloc[:_CARDINALITY_SAMPLE].nunique() > _CARDINALITY_SAMPLE // 2:
        distinct, codes = text, None  # ids, e-mails, names: hashing them first would only cost time
    else:
        codes, uniques = pd.factorize(text)
        distinct = pd.Series(uniques, dtype=text.dtype)
    distinct = distinct.str.strip()
    distinct = distinct.where(distinct != "")
    if upper:
        distinct = distinct.str.upper()
    return distinct if codes is None else pd.Series(distinct.array.take(codes, allow_fill=True))


def _identity(data: pd.DataFrame, table: SourceTable) -> pd.Series:
    """Each row's identity: its id, or (a table with `identity`) its identity columns joined.

    A row missing any identity column has a missing identity (it fails `PRESENT`, never a duplicate).
    """
    if not table.identity:
        return data[table.entity.id_column]
    parts = [data[column] for column in table.identity]
    joined = parts[0].astype(object).str.cat([p.astype(object) for p in parts[1:]], sep=IDENTITY_SEPARATOR)
    return joined.where(pd.concat(parts, axis=1).notna().all(axis=1))


def _reduce_duplicates(
    ids: np.ndarray,
    hashes: np.ndarray,
    stamps: np.ndarray,
    table: SourceTable,
    identities: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Which rows survive the reduction by id (mask), and a failure for each other row.

    `ids`: as `as_id_array` gives them, `hashes` their `id_hashes`; `stamps`: each row's
    `table.recency` in microseconds (`_OLDEST` where missing). Rows without an id are kept for
    validation (they fail `PRESENT`). Among rows sharing an id, the latest recency wins (a missing
    one counts as oldest); on a tie, the later row does.
    """
    id_column = table.entity.id_column
    keys = ids if identities is None else identities
    codes = group_ids(keys, hashes)
    codes[keys == ""] = -1  # a missing id
    positions = np.arange(len(ids))
    order = np.lexsort((positions, stamps, codes))
    is_last = np.ones(len(order), dtype=bool)
    is_last[:-1] = codes[order][:-1] != codes[order][1:]
    winners = np.zeros(len(ids), dtype=bool)
    winners[order[is_last]] = True
    winners[codes == -1] = True

    losers = np.flatnonzero(~winners)
    winner_by_code = np.empty(codes.max() + 1 if len(codes) else 0, dtype=np.int64)
    winner_by_code[codes[winners & (codes >= 0)]] = positions[winners & (codes >= 0)]
    same_time = stamps[losers] == stamps[winner_by_code[codes[losers]]]
    named = id_column if not table.identity else f"({', '.join(table.identity)})"
    later = f"duplicate {named}: a row with a later {table.recency} wins"
    tied = f"duplicate {named}: a later row with the same {table.recency} wins"
    lost = stamps[losers]
    recency = pd.Series(pd.to_datetime(np.where(lost == _OLDEST, 0, lost), unit="us", utc=True))
    duplicates = pd.DataFrame(
        {
            "position": losers,
            "order": 0,
            "field": "",
            "rule": np.where(same_time, tied, later),
            "found": _found_values(recency.where(lost != _OLDEST)),
            "kind": RuleKind.DUPLICATE,
        },
        columns=_FAILURE_COLUMNS,
    )
    return winners, duplicates


def _broken_rules(data: pd.DataFrame, table: SourceTable, rules: Sequence[Rule]) -> pd.DataFrame:
    """Every rule broken by the rows of `data`: pandera, lazily; one failure per row and rule."""
    columns: dict[str, pa.Column] = {}
    for column in table.columns:
        checks = [r.to_check() for r in rules if r.field == column and not r.row_level]
        columns[column] = pa.Column(nullable=column not in table.required, checks=checks, name=column)
    schema = pa.DataFrameSchema(columns, checks=[r.to_check() for r in rules if r.row_level])
    try:
        # the schema coerces nothing: validating in place leaves `data` as it is, uncopied
        schema.validate(data, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return _NO_FAILURES.copy()

    # a row-level check reports one case per column of a failing row: keep one per row and rule
    cases = cases.dropna(subset=["index"])
    present = cases["check"] == "not_nullable"
    cases = cases.assign(column=cases["column"].where(present)).drop_duplicates(["index", "column", "check"])
    rank = {column: i for i, column in enumerate(table.columns)}
    parts = []
    for (check, column), group in cases.groupby(["check", "column"], dropna=False, sort=False):
        positions = group["index"].to_numpy(dtype=np.int64)
        if check == "not_nullable":
            field, rule, found = column, PRESENT, [None] * len(positions)
            kind = RuleKind.MISSING
            order = rank[column] * 100
        else:
            number, rule_ = next((i, r) for i, r in enumerate(rules) if r.name == check)
            field, rule, found = rule_.field, rule_.words, _found_values(data[rule_.field].iloc[positions])
            kind = rule_.kind
            order = rank[field] * 100 + 1 + number
        parts.append(
            pd.DataFrame(
                {
                    "position": positions,
                    "order": order,
                    "field": field,
                    "rule": rule,
                    "found": found,
                    "kind": kind,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _rejected_rows(entity: Entity, ids: np.ndarray, failures: pd.DataFrame) -> tuple[RejectedRow, ...]:
    """One `RejectedRow` per failing position, its failures in `failures`' order (sorted by position)."""
    if failures.empty:
        return ()
    positions = failures["position"].to_numpy()
    starts = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
    ends = np.r_[starts[1:], len(positions)]
    found = failures["found"].to_numpy(dtype=object, copy=True)
    found[pd.isna(found)] = None
    every = [
        RuleFailure(field, rule, value, RuleKind(kind))
        for field, rule, value, kind in zip(
            failures["field"], failures["rule"], found, failures["kind"], strict=True
        )
    ]
    source_ids = ids[positions[starts]].tolist()
    rejected = []
    for start, end, source_id in zip(starts, ends, source_ids, strict=True):
        row_failures = tuple(every[start:end])
        rejected.append(
            RejectedRow(
                entity=entity,
                source_id=source_id or None,
                reason="; ".join(f.describe() for f in row_failures),
                failures=row_failures,
            )
        )
    return tuple(rejected)


def _found_values(values: pd.Series) -> list[str | None]:
    """How found values read in a reason: timestamps as ISO-8601 UTC ('...Z'), missing as None."""
    missing = values.isna().to_numpy()
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        text = values.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)
    else:
        text = values.astype("str").to_numpy(dtype=object)
    return [None if gone else value for value, gone in zip(text, missing, strict=True)]
