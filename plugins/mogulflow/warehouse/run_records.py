"""Record: the run's account and its rejected rows, in mogulflow's own warehouse tables.

The sync state has a module of its own (`mogulflow.warehouse.sync_state`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mogulflow.values.constants import REJECTS_TABLE, RUNS_TABLE
from mogulflow.values.entities import Entity
from mogulflow.values.rejected_rows import RejectedRow
from mogulflow.values.run_summary import EntityCounts, RunSummary
from mogulflow.warehouse.connection import Warehouse, naive_utc
from mogulflow.warehouse.json_columns import as_json_text

# Column prefix per entity in mogulflow_runs.
RUN_COLUMN_PREFIX = {
    Entity.LEAD: "leads",
    Entity.PLAN: "plans",
    Entity.TRIAL: "trials",
    Entity.CONVERSION: "conversions",
    Entity.ATTRIBUTE: "attributes",
    Entity.TAG: "tags",
}
COUNT_FIELDS = ("extracted", "rejected", "created", "updated", "unchanged", "failed", "deleted")


def record_rejects(
    warehouse: Warehouse, *, run_id: str, dag_id: str, rejects: Iterable[RejectedRow], at: datetime
) -> int:
    """Write one `mogulflow_rejects` row per rejected row, replacing any earlier attempt of this run.

    Returns how many rows were written. Re-running the task (an Airflow retry) does not double them.
    """
    rows = [(run_id, dag_id, str(r.entity), r.source_id, r.reason, naive_utc(at)) for r in rejects]
    entities = sorted({row[2] for row in rows})
    for entity in entities:
        warehouse.execute(
            f"DELETE FROM {REJECTS_TABLE} WHERE run_id = :run_id AND dag_id = :dag_id AND entity = :entity",
            {"run_id": run_id, "dag_id": dag_id, "entity": entity},
        )
    warehouse.insert_rows(
        REJECTS_TABLE, ("run_id", "dag_id", "entity", "source_id", "reason", "rejected_at"), rows
    )
    return len(rows)


def record_run(
    warehouse: Warehouse,
    summary: RunSummary,
    *,
    details: object,
    data_source: tuple[str, str | None],
) -> None:
    """Write (or rewrite, on a task retry) the run's row in `mogulflow_runs`; `details` (a dataclass)
    goes to its JSON column."""
    columns = [
        "run_id",
        "dag_id",
        "window_start",
        "window_end",
        "full_refresh",
        "dry_run",
        "data_source_name",
        "data_source_uuid",
        "started_at",
        "finished_at",
        "outcome",
        "message",
        "details",
    ]
    values: list[Any] = [
        summary.run_id,
        summary.dag_id,
        naive_utc(summary.window.start),
        naive_utc(summary.window.end),
        summary.window.full_refresh,
        summary.dry_run,
        data_source[0],
        data_source[1],
        naive_utc(summary.started_at),
        naive_utc(summary.finished_at),
        str(summary.outcome),
        summary.message,
        as_json_text(details),
    ]
    for entity, prefix in RUN_COLUMN_PREFIX.items():
        counts = summary.counts.get(entity, EntityCounts())
        for name in COUNT_FIELDS:
            columns.append(f"{prefix}_{name}")
            values.append(int(getattr(counts, name)))
    warehouse.upsert_rows(RUNS_TABLE, columns, [tuple(values)], key=("dag_id", "run_id"))
