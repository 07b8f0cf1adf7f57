"""Rejected rows grouped by rule, with examples; and every reject of a period as CSV."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pandas as pd

from mogulflow.monitor.queries.cells import cell_text
from mogulflow.monitor.queries.periods import Period
from mogulflow.monitor.queries.runs import run_filter
from mogulflow.values.constants import (
    REJECTS_TABLE,
    RUNS_TABLE,
)
from mogulflow.warehouse.connection import Warehouse

EXAMPLES_PER_GROUP = 3


MAX_REJECT_GROUPS = 100


REJECTS_CSV_COLUMNS = ("run_id", "dag_id", "entity", "source_id", "reason", "rejected_at")


# `field: rule (found 'value')` → `field: rule` (see `RuleFailure.describe`); one reason holds every
# broken rule, joined by "; ".
_FOUND_SUFFIX = r" \(found .*\)$"


@dataclass(frozen=True)
class RejectExample:
    """One rejected row: which id, every rule it broke, which run."""

    source_id: str | None
    reason: str
    run_id: str


@dataclass(frozen=True)
class RejectGroup:
    """The rejects of one entity that broke one rule."""

    entity: str
    rule: str
    rows: int  # reject records breaking this rule (a row rejected by two runs counts twice)
    ids: int  # distinct source ids among them
    examples: tuple[RejectExample, ...]


@dataclass(frozen=True)
class Rejects:
    """The period's rejects: totals per entity and groups per (entity, rule)."""

    rows_by_entity: Mapping[str, int]
    groups: tuple[RejectGroup, ...]

    @property
    def total(self) -> int:
        return sum(self.rows_by_entity.values())


def _rejects_in_period(period: Period, data_source_uuid: str | None) -> tuple[str, dict]:
    """The rejects of the runs started in the period (and data source), as a sub-query."""
    where, params = run_filter(period, data_source_uuid, alias="u")
    sql = (
        "SELECT r.run_id, r.dag_id, r.entity, r.source_id, r.reason, r.rejected_at "
        f"FROM {REJECTS_TABLE} r JOIN {RUNS_TABLE} u ON u.run_id = r.run_id AND u.dag_id = r.dag_id "
        f"WHERE {where}"
    )
    return sql, params


def rejects_by_rule(warehouse: Warehouse, period: Period, *, data_source_uuid: str | None = None) -> Rejects:
    """The period's rejects grouped by entity and broken rule, with a few example rows each.

    A row that broke two rules counts in both groups; `rows_by_entity` counts it once.
    """
    if not (warehouse.table_exists(REJECTS_TABLE) and warehouse.table_exists(RUNS_TABLE)):
        return Rejects({}, ())
    picked, params = _rejects_in_period(period, data_source_uuid)
    totals = warehouse.query_frame(
        f"SELECT entity, count(*) AS n FROM ({picked}) p GROUP BY entity ORDER BY entity", params
    )
    by_rule = (
        f"WITH picked AS ({picked}), "
        "broken AS (SELECT entity, source_id, reason, run_id, rejected_at, "
        f"regexp_replace(unnest(string_to_array(reason, '; ')), '{_FOUND_SUFFIX}', '') AS rule "
        "FROM picked), "
        "ranked AS (SELECT *, row_number() OVER (PARTITION BY entity, rule "
        "ORDER BY rejected_at DESC, source_id) AS nth FROM broken) "
    )
    groups = warehouse.query_frame(
        f"{by_rule}SELECT entity, rule, count(*) AS n, count(DISTINCT source_id) AS ids FROM ranked "
        f"GROUP BY entity, rule ORDER BY n DESC, entity, rule LIMIT {MAX_REJECT_GROUPS}",
        params,
    )
    examples = warehouse.query_frame(
        f"{by_rule}SELECT entity, rule, source_id, reason, run_id FROM ranked "
        f"WHERE nth <= {EXAMPLES_PER_GROUP} ORDER BY entity, rule, nth",
        params,
    )
    examples_of: dict[tuple[str, str], list[RejectExample]] = {}
    for row in examples.itertuples(index=False):
        examples_of.setdefault((row.entity, row.rule), []).append(
            RejectExample(source_id=cell_text(row.source_id), reason=str(row.reason), run_id=str(row.run_id))
        )
    return Rejects(
        rows_by_entity={str(row.entity): int(row.n) for row in totals.itertuples(index=False)},
        groups=tuple(
            RejectGroup(
                entity=str(row.entity),
                rule=str(row.rule),
                rows=int(row.n),
                ids=int(row.ids),
                examples=tuple(examples_of.get((row.entity, row.rule), ())),
            )
            for row in groups.itertuples(index=False)
        ),
    )


def iter_rejects_csv_frames(
    warehouse: Warehouse, period: Period, *, data_source_uuid: str | None = None
) -> Iterator[pd.DataFrame]:
    """Every reject of the period's runs (the CSV download), in chunks, oldest first."""
    if not (warehouse.table_exists(REJECTS_TABLE) and warehouse.table_exists(RUNS_TABLE)):
        yield pd.DataFrame(columns=list(REJECTS_CSV_COLUMNS))
        return
    picked, params = _rejects_in_period(period, data_source_uuid)
    yield from warehouse.iter_frames(
        f"SELECT {', '.join(REJECTS_CSV_COLUMNS)} FROM ({picked}) p "
        "ORDER BY rejected_at, run_id, entity, source_id",
        params,
    )
