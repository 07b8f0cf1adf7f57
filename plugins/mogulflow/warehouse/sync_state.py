"""Sync state: the one module that owns `mogulflow_sync_state`.

One entry per (entity, data source, external id) says what mogulflow last did with that row: the
ChartMogul uuid, the content hash and fields it sent, and a status. The steps read it (as a plain
mapping) before planning and hand confirmed writes back through `save_state`; nothing else
touches the table.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pandas as pd

from mogulflow.values.constants import STATE_TABLE
from mogulflow.values.entities import Entity
from mogulflow.warehouse.connection import Warehouse, naive_utc
from mogulflow.warehouse.json_columns import as_json_text, from_json_text

log = logging.getLogger(__name__)


class SyncStatus(enum.StrEnum):
    """Where a row stands with ChartMogul."""

    SYNCED = "synced"  # ChartMogul holds what `payload` says
    FAILED = "failed"  # the last write failed: re-read and re-sent by the next run
    MERGED = "merged"  # a lead merged into its paying customer: only its dates are still sent
    # rejected only because its lead or plan is not known yet: re-read, and accepted, once it is
    WAITING = "waiting"


# Statuses whose row exists in ChartMogul (a JSON import's rows count before their uuid is read back).
EXISTING = (SyncStatus.SYNCED, SyncStatus.MERGED)


@dataclass(frozen=True, kw_only=True)
class StateEntry:
    """What mogulflow last did with one external id in one data source."""

    entity: Entity
    data_source_uuid: str
    external_id: str
    status: SyncStatus
    synced_at: datetime
    run_id: str
    chartmogul_uuid: str | None = None
    content_hash: str | None = None
    payload: Mapping[str, Any] | None = None  # the fields last sent (or meant to be sent)
    source_updated_at: datetime | None = None  # the version of the source row this entry reflects


SyncState = Mapping[str, StateEntry]  # one entity's entries in one data source, by external id

_COLUMNS = (
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
        f"SELECT {', '.join(_COLUMNS)} FROM {STATE_TABLE} "
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
            payload=from_json_text(row.payload),  # type: ignore[arg-type]
            status=SyncStatus(row.status),
            synced_at=row.synced_at,
            run_id=row.run_id,
            source_updated_at=_none_if_missing(row.source_updated_at),
        )
    return entries


def ids_with_status(
    warehouse: Warehouse, entity: Entity, data_source_uuid: str, statuses: Collection[SyncStatus]
) -> set[str]:
    """External ids of one entity whose sync-state entry has one of `statuses`."""
    frame = warehouse.query_frame(
        f"SELECT external_id, status FROM {STATE_TABLE} WHERE entity = :entity "
        "AND data_source_uuid = :data_source_uuid",
        {"entity": str(entity), "data_source_uuid": data_source_uuid},
    )
    wanted = [str(status) for status in statuses]
    return set(frame.loc[frame["status"].isin(wanted), "external_id"].tolist())


def synced_ids(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> set[str]:
    """External ids of one entity that exist in the data source (synced or merged)."""
    return ids_with_status(warehouse, entity, data_source_uuid, EXISTING)


def customer_refs(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> pd.DataFrame:
    """external_id, chartmogul_uuid, status, run_id of one entity's entries in one data source: what
    the attribute steps need of the leads, without a `StateEntry` (and a parsed payload) per lead."""
    return warehouse.query_frame(
        f"SELECT external_id, chartmogul_uuid, status, run_id FROM {STATE_TABLE} "
        "WHERE entity = :entity AND data_source_uuid = :data_source_uuid",
        {"entity": str(entity), "data_source_uuid": data_source_uuid},
    )


def uuids_by_external_id(state: SyncState) -> dict[str, str]:
    """External id → ChartMogul uuid for the entries that have one and did not fail."""
    return {
        entry.external_id: entry.chartmogul_uuid
        for entry in state.values()
        if entry.chartmogul_uuid and entry.status is not SyncStatus.FAILED
    }


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
            None if e.payload is None else as_json_text(e.payload),
            str(e.status),
            naive_utc(e.synced_at),
            e.run_id,
            naive_utc(_as_datetime(e.source_updated_at)),
        )
        for e in latest.values()
    ]
    warehouse.upsert_rows(STATE_TABLE, _COLUMNS, rows, key=("entity", "data_source_uuid", "external_id"))


@dataclass(frozen=True, kw_only=True)
class SyncedRows:
    """Many rows of one entity confirmed synced together, as columns (one position per row).

    A first load confirms ~140,000 attribute and tag rows that their customers' creates carried: a
    `StateEntry` (and a clock read) for each cost more than the rest of the attribute steps.
    """

    entity: Entity
    data_source_uuid: str
    run_id: str
    synced_at: datetime
    external_ids: Sequence[str]
    chartmogul_uuids: Sequence[str | None]
    content_hashes: Sequence[str]
    payloads: Sequence[Mapping[str, Any]]
    source_updated_at: Sequence[datetime | None]


def save_synced_rows(warehouse: Warehouse, rows: SyncedRows) -> None:
    """Upsert `rows` in one transaction: the same table rows `save_state` writes for their entries."""
    entity, status, synced_at = str(rows.entity), str(SyncStatus.SYNCED), naive_utc(rows.synced_at)
    columns = (
        rows.external_ids,
        rows.chartmogul_uuids,
        rows.content_hashes,
        rows.payloads,
        rows.source_updated_at,
    )
    table_rows = [
        (
            entity,
            rows.data_source_uuid,
            external_id,
            uuid,
            digest,
            as_json_text(payload),
            status,
            synced_at,
            rows.run_id,
            naive_utc(_as_datetime(version)),
        )
        for external_id, uuid, digest, payload, version in zip(*columns, strict=True)
    ]
    key = ("entity", "data_source_uuid", "external_id")
    warehouse.upsert_rows(STATE_TABLE, _COLUMNS, table_rows, key=key)


def checkpoint_to(warehouse: Warehouse) -> Callable[[Sequence[StateEntry]], None]:
    """The checkpoint a load calls after each confirmed batch: save the entries to this warehouse."""

    def checkpoint(entries: Sequence[StateEntry]) -> None:
        save_state(warehouse, entries)

    return checkpoint


# ---- the waiting rule ---------------------------------------------------------------------------


def mark_waiting(
    warehouse: Warehouse,
    entity: Entity,
    data_source_uuid: str,
    external_ids: Iterable[str],
    *,
    run_id: str,
    at: datetime,
) -> int:
    """Remember rows rejected only for an unknown lead or plan, to accept them once it arrives.

    A row that already exists in ChartMogul keeps its entry (and its object): only rows never
    synced wait. Returns how many entries were written.
    """
    existing = synced_ids(warehouse, entity, data_source_uuid)
    entries = [
        StateEntry(
            entity=entity,
            data_source_uuid=data_source_uuid,
            external_id=external_id,
            status=SyncStatus.WAITING,
            synced_at=at,
            run_id=run_id,
        )
        for external_id in sorted(set(external_ids) - existing)
    ]
    if entries:
        save_state(warehouse, entries)
    return len(entries)


def clear_waiting(
    warehouse: Warehouse, entity: Entity, data_source_uuid: str, external_ids: Collection[str]
) -> None:
    """Forget the `waiting` marks of these ids: their rows were read again and no longer wait.

    (Attributes and tags wait per lead: the mark's id is the lead's, not one row's, so no write of a
    row replaces it as it does a trial's.)
    """
    waiting = ids_with_status(warehouse, entity, data_source_uuid, (SyncStatus.WAITING,)) & set(external_ids)
    for external_id in sorted(waiting):
        warehouse.execute(
            f"DELETE FROM {STATE_TABLE} WHERE entity = :entity AND data_source_uuid = :data_source_uuid "
            "AND external_id = :external_id AND status = :status",
            {
                "entity": str(entity),
                "data_source_uuid": data_source_uuid,
                "external_id": external_id,
                "status": str(SyncStatus.WAITING),
            },
        )


# ---- the resend rule (reconciliation) -----------------------------------------------------------


def mark_for_resend(
    warehouse: Warehouse,
    entity: Entity,
    data_source_uuid: str,
    *,
    different: Collection[str],
    missing: Collection[str],
    run_id: str,
    at: datetime,
) -> int:
    """Make the next sync re-send rows that ChartMogul no longer holds as they were synced.

    A marked entry becomes `failed` without a content hash: the extract re-reads failed rows and
    the planner re-sends them whole. A row `missing` from ChartMogul also forgets its uuid, so it
    is created again instead of PATCHed. Only `synced` entries are marked (a merged lead's customer
    is not ours to rewrite). Returns how many entries were marked.
    """
    wanted = set(different) | set(missing)
    if not wanted:
        return 0
    entries = load_state(warehouse, entity, data_source_uuid)
    marked = [
        replace(
            entry,
            status=SyncStatus.FAILED,
            content_hash=None,
            chartmogul_uuid=None if external_id in missing else entry.chartmogul_uuid,
            run_id=run_id,
            synced_at=at,
        )
        for external_id, entry in entries.items()
        if external_id in wanted and entry.status is SyncStatus.SYNCED
    ]
    if marked:
        save_state(warehouse, marked)
    return len(marked)


# ---- first contact ------------------------------------------------------------------------------


# ---- values as the warehouse holds them ------------------------------------------------------------


def _none_if_missing(value: Any) -> Any:
    if value is None:
        return None
    try:
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
