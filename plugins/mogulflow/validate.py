"""Validate one entity's extract: the rows to send and the rows to reject, with every rule they broke.

Each `validate_<entity>` function follows the same steps (the contract's "Validation" section):

1. normalise: keep the contract's source columns; texts stripped, blank → missing; timestamps
   tz-aware UTC; integers nullable; `country` and `currency` upper-cased;
2. reduce rows sharing an id to the one with the latest `updated_at` (conversions: `converted_at`);
   on a tie, the row that comes later in the extract wins; the others are rejected as duplicates;
3. validate the remaining rows with a pandera schema, lazily, so that every broken rule of every row
   is collected (rows without an id included: they are rejected with a null `source_id`).

Everything is vectorised; `RejectedRow` objects are built for the failing rows only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import email_validator
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pycountry

from mogulflow.model import Entity, RejectedRow, RuleFailure, RuleKind, ValidationResult
from mogulflow.source_tables import CONVERSIONS, INTERVAL_UNITS, LEADS, PLANS, TRIALS, SourceTable

CLOCK_SKEW = timedelta(minutes=5)
COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)
CURRENCY_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)

PRESENT = "must be present"
IN_FUTURE = "must not be in the future"


@dataclass(frozen=True)
class Rule:
    """One validation rule: a vectorised test and how its failure reads in a reject reason.

    `test` gets the column (or, for a `row_level` rule, the whole frame) and returns a boolean
    Series, True where the row passes. Column tests never see missing values (pandera drops them
    first); row-level tests must let rows with missing values pass, `PRESENT` reports those.
    """

    field: str
    words: str
    test: Callable[[pd.Series | pd.DataFrame], pd.Series]
    row_level: bool = False
    kind: RuleKind = RuleKind.INVALID

    @property
    def name(self) -> str:
        return f"{self.field}: {self.words}"

    def to_check(self) -> pa.Check:
        return pa.Check(self.test, name=self.name, error=self.name)


def validate_leads(frame: pd.DataFrame, *, now: datetime) -> ValidationResult:
    """Validate extracted `leads` rows (see the contract's rules for leads)."""
    return _validate(
        frame,
        LEADS,
        [
            Rule("email", "must be a valid email address", is_valid_email),
            Rule("country", "must be an ISO 3166-1 alpha-2 country code", _is_in(COUNTRY_CODES)),
            Rule(
                "lead_created_at",
                "must not be after free_trial_started_at",
                _not_after("lead_created_at", "free_trial_started_at"),
                row_level=True,
            ),
            *_not_in_future(LEADS, now),
        ],
    )


def validate_plans(frame: pd.DataFrame, *, now: datetime) -> ValidationResult:
    """Validate extracted `plans` rows (see the contract's rules for plans)."""
    return _validate(
        frame,
        PLANS,
        [
            Rule("interval_count", "must be at least 1", lambda s: s >= 1),
            Rule("interval_unit", f"must be one of {', '.join(INTERVAL_UNITS)}", _is_in(INTERVAL_UNITS)),
            *_not_in_future(PLANS, now),
        ],
    )


def validate_trials(
    frame: pd.DataFrame,
    *,
    now: datetime,
    known_lead_ids: Collection[str],
    known_plan_ids: Collection[str],
) -> ValidationResult:
    """Validate extracted `trials` rows.

    `known_lead_ids` / `known_plan_ids`: the ids valid in this run together with those synced before.
    """
    return _validate(
        frame,
        TRIALS,
        [
            Rule(
                "lead_id",
                "must name a lead that is valid or was synced before",
                _is_in(known_lead_ids),
                kind=RuleKind.UNKNOWN_PARENT,
            ),
            Rule(
                "plan_id",
                "must name a plan that is valid or was synced before",
                _is_in(known_plan_ids),
                kind=RuleKind.UNKNOWN_PARENT,
            ),
            Rule("ends_at", "must be after started_at", _after("ends_at", "started_at"), row_level=True),
            Rule("amount_in_cents", "must not be negative", lambda s: s >= 0),
            Rule("currency", "must be an ISO 4217 currency code", _is_in(CURRENCY_CODES)),
            Rule("quantity", "must be at least 1", lambda s: s >= 1),
            *_not_in_future(TRIALS, now),
        ],
    )


def validate_conversions(
    frame: pd.DataFrame, *, now: datetime, known_lead_ids: Collection[str]
) -> ValidationResult:
    """Validate extracted `conversions` rows; `known_lead_ids`: leads valid in this run or synced before."""
    return _validate(
        frame,
        CONVERSIONS,
        [
            Rule(
                "lead_id",
                "must name a lead mogulflow has synced",
                _is_in(known_lead_ids),
                kind=RuleKind.UNKNOWN_PARENT,
            ),
            *_not_in_future(CONVERSIONS, now),
        ],
    )


# --- rules ---------------------------------------------------------------------------------------


def _is_in(allowed: Collection[str]) -> Callable[[pd.Series], pd.Series]:
    allowed = allowed if isinstance(allowed, (set, frozenset, pd.Index)) else frozenset(allowed)
    return lambda s: s.isin(allowed)


def _after(field: str, other: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[field].isna() | df[other].isna() | (df[field] > df[other])


def _not_after(field: str, other: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[field].isna() | df[other].isna() | (df[field] <= df[other])


def _not_in_future(table: SourceTable, now: datetime) -> list[Rule]:
    latest = _utc(now) + CLOCK_SKEW
    return [Rule(column, IN_FUTURE, lambda s: s <= latest) for column in table.timestamps]


# Addresses of this common shape are all accepted by email-validator (see tests): dot-atom local part
# of at most 64 characters, dotted domain of letters/digits/inner hyphens, labels of at most 63
# characters, an alphabetic top-level domain that is not a special-use one, 254 characters in all.
# Everything else is asked to email-validator itself, once per distinct value.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_COMMON_EMAIL = (
    r"(?=.{1,254}$)(?=[^@]{1,64}@)(?!.*@.*[^.@]{64})"
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
    r"@(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+"
    rf"(?!(?:{'|'.join(email_validator.SPECIAL_USE_DOMAIN_NAMES)})$)[A-Za-z]{{2,63}}"
)
COMMON_EMAIL = re.compile(_COMMON_EMAIL, re.IGNORECASE)


def is_valid_email(emails: pd.Series) -> pd.Series:
    """True where the address is valid (email-validator, no deliverability check); vectorised."""
    valid = emails.str.fullmatch(COMMON_EMAIL).fillna(False).astype(bool)
    unusual = emails[~valid]
    if len(unusual):
        valid.loc[unusual.index] = unusual.map(_is_valid_email_address).astype(bool)
    return valid


@functools.lru_cache(maxsize=65536)
def _is_valid_email_address(address: str) -> bool:
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


# --- the steps -----------------------------------------------------------------------------------


def _validate(
    frame: pd.DataFrame | Iterable[pd.DataFrame], table: SourceTable, rules: Sequence[Rule]
) -> ValidationResult:
    data = normalise(frame, table)
    winners, duplicates = _reduce_duplicates(data, table)
    failures = pd.concat([duplicates, _broken_rules(data, winners, table, rules)], ignore_index=True)
    failures = failures.astype({"position": "int64", "order": "int64"}).sort_values(["position", "order"])
    rejected = _rejected_rows(table.entity, data[table.entity.id_column], failures)
    keep = winners.copy()
    keep[failures["position"].to_numpy()] = False
    valid = data.loc[keep].reset_index(drop=True)
    return ValidationResult(entity=table.entity, valid=valid, rejected=rejected, extracted=len(data))


# One row per broken rule of a rejected row; `order` sorts a row's failures (column order, then rule order).
_FAILURE_COLUMNS = ["position", "order", "field", "rule", "found", "kind"]


def normalise(frame: pd.DataFrame | Iterable[pd.DataFrame], table: SourceTable) -> pd.DataFrame:
    """The contract's columns, typed: texts stripped (blank → missing), UTC timestamps, nullable ints.

    `frame` may also be the chunks of one extract, in order: each is normalised as it comes, so
    the raw rows need not all sit in memory at once.
    """
    if isinstance(frame, pd.DataFrame):
        return _normalise_frame(frame, table)
    parts = [_normalise_frame(chunk, table) for chunk in frame]
    rows = [part for part in parts if len(part)] or parts[:1]
    if not rows:
        raise ValueError(f"the {table.entity.value} extract gave no frame at all, not even an empty one")
    return rows[0] if len(rows) == 1 else pd.concat(rows, ignore_index=True)


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
        else:
            data[column] = _normalised_text(values, upper=column in table.upper_cased)
    return pd.DataFrame(data)


# Rows looked at to tell a column of mostly distinct values from one of few repeated values.
_CARDINALITY_SAMPLE = 10_000


def _normalised_text(values: pd.Series, *, upper: bool) -> pd.Series:
    """Stripped, blank → missing, optionally upper-cased.

    In a column of few distinct values each is normalised once and equal values share one string
    object: at a million rows `country` holds a handful of values, and an object per row costs ~55
    bytes.
    """
    text = values.astype("str")
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


def _reduce_duplicates(data: pd.DataFrame, table: SourceTable) -> tuple[np.ndarray, pd.DataFrame]:
    """Which rows survive the reduction by id (mask), and a failure for each other row.

    Rows without an id are kept for validation (they fail `PRESENT`). Among rows sharing an id, the
    latest `table.recency` wins (a missing one counts as oldest); on a tie, the later row does.
    """
    id_column = table.entity.id_column
    codes, _ = pd.factorize(data[id_column])  # -1 for a missing id
    recency = data[table.recency]
    stamps = np.where(recency.isna(), np.iinfo(np.int64).min, recency.to_numpy("int64", na_value=0))
    positions = np.arange(len(data))
    order = np.lexsort((positions, stamps, codes))
    is_last = np.ones(len(order), dtype=bool)
    is_last[:-1] = codes[order][:-1] != codes[order][1:]
    winners = np.zeros(len(data), dtype=bool)
    winners[order[is_last]] = True
    winners[codes == -1] = True

    losers = np.flatnonzero(~winners)
    winner_by_code = np.empty(codes.max() + 1 if len(codes) else 0, dtype=np.int64)
    winner_by_code[codes[winners & (codes >= 0)]] = positions[winners & (codes >= 0)]
    same_time = stamps[losers] == stamps[winner_by_code[codes[losers]]]
    later = f"duplicate {id_column}: a row with a later {table.recency} wins"
    tied = f"duplicate {id_column}: a later row with the same {table.recency} wins"
    duplicates = pd.DataFrame(
        {
            "position": losers,
            "order": 0,
            "field": "",
            "rule": np.where(same_time, tied, later),
            "found": _found_values(recency.iloc[losers]),
            "kind": RuleKind.DUPLICATE,
        },
        columns=_FAILURE_COLUMNS,
    )
    return winners, duplicates


def _broken_rules(
    data: pd.DataFrame, rows: np.ndarray, table: SourceTable, rules: Sequence[Rule]
) -> pd.DataFrame:
    """Every rule broken by the `rows` (mask) of `data`: pandera, lazily; one failure per row and rule."""
    columns: dict[str, pa.Column] = {}
    for column in table.columns:
        checks = [r.to_check() for r in rules if r.field == column and not r.row_level]
        columns[column] = pa.Column(nullable=column not in table.required, checks=checks, name=column)
    schema = pa.DataFrameSchema(columns, checks=[r.to_check() for r in rules if r.row_level])
    try:
        # `data.loc[rows]` is a copy of our own: pandera need not copy it again
        schema.validate(data.loc[rows], lazy=True, inplace=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pd.DataFrame(columns=_FAILURE_COLUMNS)

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


def _rejected_rows(entity: Entity, ids: pd.Series, failures: pd.DataFrame) -> tuple[RejectedRow, ...]:
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
    source_ids = ids.iloc[positions[starts]].astype(object).to_numpy()
    rejected = []
    for start, end, source_id in zip(starts, ends, source_ids, strict=True):
        row_failures = tuple(every[start:end])
        rejected.append(
            RejectedRow(
                entity=entity,
                source_id=None if pd.isna(source_id) else str(source_id),
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


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
