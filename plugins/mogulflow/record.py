"""Record: mogulflow's own tables in the warehouse (rejects, runs, sync state)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mogulflow.extract import read_sql
from mogulflow.model import Entity, EntityCounts, RejectedRow, RunSummary
from mogulflow.warehouse import Warehouse

REJECTS_TABLE = "mogulflow_rejects"
RUNS_TABLE = "mogulflow_runs"
STATE_TABLE = "mogulflow_sync_state"

STATUS_SYNCED = "synced"
STATUS_FAILED = "failed"
STATUS_MERGED = "merged"
# Rejected only because its lead or plan is not known yet: re-read, and accepted, once that arrives.
STATUS_WAITING = "waiting"

# Column prefix per entity in mogulflow_runs.
RUN_COLUMN_PREFIX = {
    Entity.LEAD: "leads",
    Entity.PLAN: "plans",
    Entity.TRIAL: "trials",
    Entity.CONVERSION: "conversions",
}
COUNT_FIELDS = ("extracted", "rejected", "created", "updated", "unchanged", "failed")


@dataclass(frozen=True)
class StateEntry:
    """What mogulflow last did with one external id in one data source."""

    entity: Entity
    data_source_uuid: str
    external_id: str
    chartmogul_uuid: str | None
    content_hash: str | None
    payload: Mapping[str, Any] | None
    status: str
    synced_at: datetime
    run_id: str
    source_updated_at: datetime | None = None  # the version of the source row this entry reflects


def ensure_tables(warehouse: Warehouse) -> None:
    """Create mogulflow's tables when they are missing (idempotent)."""
    warehouse.execute_script(read_sql("mogulflow_tables.sql"))


def _naive_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def record_rejects(
    warehouse: Warehouse, *, run_id: str, dag_id: str, rejects: Iterable[RejectedRow], at: datetime
) -> int:
    """Write one `mogulflow_rejects` row per rejected row, replacing any earlier attempt of this run.

    Returns how many rows were written. Re-running the task (an Airflow retry) does not double them.
    """
    rows = [(run_id, dag_id, str(r.entity), r.source_id, r.reason, _naive_utc(at)) for r in rejects]
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
    details: Mapping[str, Any],
    data_source: tuple[str, str | None],
) -> None:
    """Write (or rewrite, on a task retry) the run's row in `mogulflow_runs`."""
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
        _naive_utc(summary.window.start),
        _naive_utc(summary.window.end),
        summary.window.full_refresh,
        summary.dry_run,
        data_source[0],
        data_source[1],
        _naive_utc(summary.started_at),
        _naive_utc(summary.finished_at),
        summary.outcome,
        summary.message,
        json.dumps(details, default=str, sort_keys=True),
    ]
    for entity, prefix in RUN_COLUMN_PREFIX.items():
        counts = summary.counts.get(entity, EntityCounts())
        for name in COUNT_FIELDS:
            columns.append(f"{prefix}_{name}")
            values.append(int(getattr(counts, name)))
    warehouse.upsert_rows(RUNS_TABLE, columns, [tuple(values)], key=("dag_id", "run_id"))


_STATE_COLUMNS = (
    "entity",
    "data_source_uuid",
    "external_id",
    "chartmogul_uuid",
    "content_hash",
    "payload",
    "status",
    "synced_at",
    "run_id",
    "source_updated_at",
)


def load_state(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> dict[str, StateEntry]:
    """Every sync-state entry of one entity in one data source, by external id."""
    frame = warehouse.query_frame(
        f"SELECT {', '.join(_STATE_COLUMNS)} FROM {STATE_TABLE} "
        "WHERE entity = :entity AND data_source_uuid = :data_source_uuid",
        {"entity": str(entity), "data_source_uuid": data_source_uuid},
    )
    entries: dict[str, StateEntry] = {}
    for row in frame.itertuples(index=False):
        entries[row.external_id] = StateEntry(
            entity=entity,
            data_source_uuid=row.data_source_uuid,
            external_id=row.external_id,
            chartmogul_uuid=_none_if_missing(row.chartmogul_uuid),
            content_hash=_none_if_missing(row.content_hash),
            payload=json.loads(row.payload) if isinstance(row.payload, str) and row.payload else None,
            status=row.status,
            synced_at=row.synced_at,
            run_id=row.run_id,
            source_updated_at=_none_if_missing(row.source_updated_at),
        )
    return entries


def synced_ids(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> set[str]:
    """External ids of one entity that mogulflow has synced into the data source (merged included).

    A JSON import's records count even before their uuid was read back: they exist all the same.
    """
    return ids_with_status(warehouse, entity, data_source_uuid, (STATUS_SYNCED, STATUS_MERGED))


def ids_with_status(
    warehouse: Warehouse, entity: Entity, data_source_uuid: str, statuses: Sequence[str]
) -> set[str]:
    """External ids of one entity whose sync-state entry has one of `statuses`."""
    frame = warehouse.query_frame(
        f"SELECT external_id, status FROM {STATE_TABLE} WHERE entity = :entity "
        "AND data_source_uuid = :data_source_uuid",
        {"entity": str(entity), "data_source_uuid": data_source_uuid},
    )
    return set(frame.loc[frame["status"].isin(list(statuses)), "external_id"].tolist())


def save_state(warehouse: Warehouse, entries: Sequence[StateEntry]) -> None:
    """Upsert sync-state entries in one transaction: the checkpoint after a confirmed batch."""
    latest: dict[tuple[str, str, str], StateEntry] = {}
    for entry in entries:  # one row per key per statement (DuckDB refuses to update a row twice)
        latest[(str(entry.entity), entry.data_source_uuid, entry.external_id)] = entry
    rows = [
        (
            str(e.entity),
            e.data_source_uuid,
            e.external_id,
            e.chartmogul_uuid,
            e.content_hash,
            None if e.payload is None else json.dumps(e.payload, sort_keys=True, default=str),
            e.status,
            _naive_utc(e.synced_at),
            e.run_id,
            _naive_utc(_as_datetime(e.source_updated_at)),
        )
        for e in latest.values()
    ]
    warehouse.upsert_rows(
        STATE_TABLE, _STATE_COLUMNS, rows, key=("entity", "data_source_uuid", "external_id")
    )


def _none_if_missing(value: Any) -> Any:
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _as_datetime(value: Any) -> datetime | None:
    """A pandas Timestamp (from a frame) or datetime as a plain datetime; None stays None."""
    if value is None:
        return None
    to_pydatetime = getattr(value, "to_pydatetime", None)
    return to_pydatetime() if to_pydatetime else value
