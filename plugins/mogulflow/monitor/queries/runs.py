"""Recent runs of the monitored DAGs, with their per-entity counts, and the data sources they wrote."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mogulflow.monitor.queries.cells import cell_datetime, cell_text
from mogulflow.monitor.queries.periods import Period
from mogulflow.values.constants import (
    LEADS_TRIALS_DAG_ID,
    MERGE_DAG_ID,
    RUNS_TABLE,
)
from mogulflow.values.entities import OPTIONAL_ENTITIES
from mogulflow.values.run_summary import EntityCounts
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.run_records import COUNT_FIELDS, RUN_COLUMN_PREFIX

MONITORED_DAG_IDS = (LEADS_TRIALS_DAG_ID, MERGE_DAG_ID)


# Enough to read a night's story without paging; the CSV has every reject.
DEFAULT_RUN_LIMIT = 50


@dataclass(frozen=True)
class DataSource:
    """A ChartMogul data source mogulflow has written to, as the runs recorded it."""

    name: str
    uuid: str


@dataclass(frozen=True)
class RunRow:
    """One run of either DAG, as `mogulflow_runs` holds it."""

    run_id: str
    dag_id: str
    window_start: datetime | None
    window_end: datetime | None
    full_refresh: bool
    dry_run: bool
    data_source_name: str | None
    started_at: datetime
    finished_at: datetime
    outcome: str
    message: str | None
    counts: Mapping[str, EntityCounts]  # by entity, only those the DAG handles

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


def list_data_sources(warehouse: Warehouse) -> tuple[DataSource, ...]:
    """The data sources the runs have written to, most recently used first."""
    if not warehouse.table_exists(RUNS_TABLE):
        return ()
    frame = warehouse.query_frame(
        f"SELECT data_source_name, data_source_uuid, max(started_at) AS last_run FROM {RUNS_TABLE} "
        "WHERE data_source_uuid IS NOT NULL GROUP BY data_source_name, data_source_uuid "
        "ORDER BY last_run DESC, data_source_name"
    )
    return tuple(
        DataSource(name=str(row.data_source_name or row.data_source_uuid), uuid=str(row.data_source_uuid))
        for row in frame.itertuples(index=False)
    )


def run_filter(period: Period, data_source_uuid: str | None, *, alias: str = "") -> tuple[str, dict]:
    prefix = f"{alias}." if alias else ""
    sql = f"{prefix}started_at >= :since AND {prefix}started_at < :until"
    params: dict[str, Any] = {"since": period.start, "until": period.end}
    if data_source_uuid:
        sql += f" AND {prefix}data_source_uuid = :data_source_uuid"
        params["data_source_uuid"] = data_source_uuid
    return sql, params


_ENTITIES_OF_DAG = {
    LEADS_TRIALS_DAG_ID: ("lead", "plan", "trial", "attribute", "tag"),
    MERGE_DAG_ID: ("conversion",),
}


def recent_runs(
    warehouse: Warehouse,
    period: Period,
    *,
    data_source_uuid: str | None = None,
    dag_id: str | None = None,
    limit: int = DEFAULT_RUN_LIMIT,
) -> tuple[RunRow, ...]:
    """The runs of the monitored DAGs (the sync and the merge) started in the period, newest first."""
    if not warehouse.table_exists(RUNS_TABLE):
        return ()
    where, params = run_filter(period, data_source_uuid)
    if dag_id:
        where += " AND dag_id = :dag_id"
        params["dag_id"] = dag_id
    # A table made before an entity had columns lacks them until the next sync adds them.
    present = warehouse.column_names(RUNS_TABLE)
    prefixes = {
        entity: prefix
        for entity, prefix in RUN_COLUMN_PREFIX.items()
        if not present or f"{prefix}_extracted" in present
    }
    count_columns = [f"{prefix}_{name}" for prefix in prefixes.values() for name in COUNT_FIELDS]
    frame = warehouse.query_frame(
        "SELECT run_id, dag_id, window_start, window_end, full_refresh, dry_run, data_source_name, "
        f"started_at, finished_at, outcome, message, {', '.join(count_columns)} FROM {RUNS_TABLE} "
        f"WHERE {where} ORDER BY started_at DESC, run_id DESC LIMIT {int(limit)}",
        params,
    )
    runs = []
    for row in frame.to_dict("records"):
        entities = _ENTITIES_OF_DAG.get(row["dag_id"], tuple(str(e) for e in RUN_COLUMN_PREFIX))
        counts = {
            str(entity): EntityCounts(**{name: int(row[f"{prefix}_{name}"]) for name in COUNT_FIELDS})
            for entity, prefix in prefixes.items()
            if str(entity) in entities
            # attributes and tags only when the run read them (their tables are optional)
            and (entity not in OPTIONAL_ENTITIES or int(row[f"{prefix}_extracted"]) > 0)
        }
        runs.append(
            RunRow(
                run_id=str(row["run_id"]),
                dag_id=str(row["dag_id"]),
                window_start=cell_datetime(row["window_start"]),
                window_end=cell_datetime(row["window_end"]),
                full_refresh=bool(row["full_refresh"]),
                dry_run=bool(row["dry_run"]),
                data_source_name=cell_text(row["data_source_name"]),
                started_at=cell_datetime(row["started_at"]) or datetime.min,
                finished_at=cell_datetime(row["finished_at"]) or datetime.min,
                outcome=str(row["outcome"]),
                message=cell_text(row["message"]),
                counts=counts,
            )
        )
    return tuple(runs)
