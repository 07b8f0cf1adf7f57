"""The latest reconciliation of a data source: differences by kind and entity, with examples."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mogulflow.monitor.queries.cells import cell_datetime, cell_text
from mogulflow.values.constants import (
    RECONCILE_DAG_ID,
    RECONCILIATION_TABLE,
    RUNS_TABLE,
)
from mogulflow.warehouse.connection import Warehouse

RECONCILIATION_EXAMPLES = 5


@dataclass(frozen=True)
class ReconciliationGroup:
    """The differences of one kind (and field) for one entity found by the latest reconciliation."""

    entity: str
    kind: str  # missing (in ChartMogul), extra (in ChartMogul), different
    field: str | None
    rows: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Reconciliation:
    """The latest reconciliation run of the data source, or why there is none."""

    available: bool  # False: the table does not exist yet (no reconciliation ever ran)
    run_id: str | None = None
    checked_at: datetime | None = None
    groups: tuple[ReconciliationGroup, ...] = ()

    @property
    def total(self) -> int:
        return sum(group.rows for group in self.groups)


def latest_reconciliation(warehouse: Warehouse, *, data_source_uuid: str | None = None) -> Reconciliation:
    """The differences the latest reconciliation run found, by entity, kind and field."""
    if not warehouse.table_exists(RECONCILIATION_TABLE):
        return Reconciliation(available=False)
    where, params = ("data_source_uuid = :data_source_uuid", {"data_source_uuid": data_source_uuid})
    if not data_source_uuid:
        where, params = "1 = 1", {}
    # A reconciliation that found no drift writes no difference rows, only its run row: the latest
    # run is the newer of the two, so "ChartMogul agrees" shows as such, not as "never ran".
    latest = warehouse.query_frame(
        f"SELECT run_id, max(checked_at) AS checked_at FROM ("
        f"SELECT run_id, checked_at FROM {RECONCILIATION_TABLE} WHERE {where} UNION ALL "
        f"SELECT run_id, finished_at AS checked_at FROM {RUNS_TABLE} "
        f"WHERE dag_id = :reconcile_dag_id AND {where}) AS checks "
        "GROUP BY run_id ORDER BY checked_at DESC LIMIT 1",
        {**params, "reconcile_dag_id": RECONCILE_DAG_ID},
    )
    if latest.empty:
        return Reconciliation(available=False)
    run_id = str(latest.iat[0, 0])
    ranked = (
        "WITH ranked AS (SELECT entity, kind, field, external_id, row_number() OVER "
        "(PARTITION BY entity, kind, field ORDER BY external_id) AS nth "
        f"FROM {RECONCILIATION_TABLE} WHERE run_id = :run_id AND {where}) "
    )
    params = {**params, "run_id": run_id}
    groups = warehouse.query_frame(
        f"{ranked}SELECT entity, kind, field, count(*) AS n FROM ranked GROUP BY entity, kind, field "
        "ORDER BY entity, kind, field",
        params,
    )
    examples = warehouse.query_frame(
        f"{ranked}SELECT entity, kind, field, external_id FROM ranked "
        f"WHERE nth <= {RECONCILIATION_EXAMPLES} ORDER BY nth",
        params,
    )
    examples_of: dict[tuple, list[str]] = {}
    for row in examples.itertuples(index=False):
        examples_of.setdefault((row.entity, row.kind, cell_text(row.field)), []).append(str(row.external_id))
    return Reconciliation(
        available=True,
        run_id=run_id,
        checked_at=cell_datetime(latest.iat[0, 1]),
        groups=tuple(
            ReconciliationGroup(
                entity=str(row.entity),
                kind=str(row.kind),
                field=cell_text(row.field),
                rows=int(row.n),
                examples=tuple(examples_of.get((row.entity, row.kind, cell_text(row.field)), ())),
            )
            for row in groups.itertuples(index=False)
        ),
    )
