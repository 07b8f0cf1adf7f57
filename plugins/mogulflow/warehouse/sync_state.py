"""Sync state: the one module that owns `mogulflow_sync_state`.

One entry per (entity, data source, external id) says what mogulflow last did with that row: the
ChartMogul uuid, the content hash and fields it sent, and a status. The steps read it (as a plain
mapping) before planning and hand confirmed writes back through `save_state`; nothing else
touches the table.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mogulflow.values.constants import STATE_TABLE
from mogulflow.values.entities import Entity
from mogulflow.values.id_arrays import KnownIds, as_id_array
from mogulflow.warehouse.connection import Warehouse, naive_utc
from mogulflow.warehouse.created_objects import remember_created
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
    # ChartMogul confirmed mogulflow created the object in this write (`mogulflow_created` lists it).
    created: bool = False


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


# Ids per state query: how many `:idN` placeholders one `IN (...)` list binds. Small enough for
# every driver's parameter limit (BigQuery, Snowflake), large enough that a 50,000-row chunk is 25 queries.
STATE_IDS_PER_QUERY = 2_000


def load_state(
    warehouse: Warehouse,
    entity: Entity,
    data_source_uuid: str,
    external_ids: Iterable[str] | None = None,
) -> dict[str, StateEntry]:
    """The sync-state entries of one entity in one data source, by external id.

    With `external_ids`, only theirs (an id without an entry is left out): a step plans its rows
    against their own entries, never the whole account's (a million customers' parsed payloads).
    """
    select = (
        f"SELECT {', '.join(_COLUMNS)} FROM {STATE_TABLE} "
        "WHERE entity = :entity AND data_source_uuid = :data_source_uuid"
    )
    params: dict[str, Any] = {"entity": str(entity), "data_source_uuid": data_source_uuid}
    entries: dict[str, StateEntry] = {}
    if external_ids is None:
        frames: Iterable[pd.DataFrame] = [warehouse.query_frame(select, params)]
    else:
        frames = (
            warehouse.query_frame(f"{select} AND external_id IN ({placeholders})", {**params, **named})
            for placeholders, named in _id_lists(external_ids)
        )
    for frame in frames:
        for row in frame.itertuples(index=False):
            entries[row.external_id] = _entry_of(entity, row)
    return entries


def _id_lists(external_ids: Iterable[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The distinct ids as `IN` lists of at most `STATE_IDS_PER_QUERY` placeholders, with their values."""
    wanted = sorted({str(external_id) for external_id in external_ids})
    for start in range(0, len(wanted), STATE_IDS_PER_QUERY):
        named = {
            f"id{i}": external_id for i, external_id in enumerate(wanted[start : start + STATE_IDS_PER_QUERY])
        }
        yield ", ".join(f":{name}" for name in named), named


def count_state(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> int:
    """How many entries one entity has in one data source (about what a listing of it reads)."""
    count = warehouse.scalar(
        f"SELECT COUNT(*) FROM {STATE_TABLE} WHERE entity = :entity AND data_source_uuid = :data_source_uuid",
        {"entity": str(entity), "data_source_uuid": data_source_uuid},
    )
    return int(count or 0)


class StoredState:
    """One entity's sync state in one data source, read from the table only for the ids asked for."""

    def __init__(self, warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> None:
        self.warehouse, self.entity, self.data_source_uuid = warehouse, entity, data_source_uuid
        self._size: int | None = None

    @property
    def size(self) -> int:
        """How many entries the entity has in the data source."""
        if self._size is None:
            self._size = count_state(self.warehouse, self.entity, self.data_source_uuid)
        return self._size

    def entries(self, external_ids: Iterable[str]) -> dict[str, StateEntry]:
        """The entries of these ids (ids without one left out)."""
        if not self.size:
            return {}  # a first load: no query per chunk
        return load_state(self.warehouse, self.entity, self.data_source_uuid, external_ids)


class HeldState:
    """A sync state already in memory (rebuilt from the API on first contact, or none), read like
    `StoredState`."""

    def __init__(self, entries: Mapping[str, StateEntry]) -> None:
        self._entries = entries

    @property
    def size(self) -> int:
        """How many entries it holds."""
        return len(self._entries)

    def entries(self, external_ids: Iterable[str]) -> dict[str, StateEntry]:
        """The entries of these ids (ids without one left out)."""
        if not self._entries:
            return {}  # a dry run without a data source: nothing to look up, chunk after chunk
        return {i: self._entries[i] for i in map(str, external_ids) if i in self._entries}


StateSource = StoredState | HeldState


def _entry_of(entity: Entity, row: Any) -> StateEntry:
    return StateEntry(
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


def ids_with_status(
    warehouse: Warehouse, entity: Entity, data_source_uuid: str, statuses: Collection[SyncStatus]
) -> KnownIds:
    """External ids of one entity whose sync-state entry has one of `statuses` (as arrays: a million
    synced customers' ids take ~24 MiB, not a Python set's ~100 MiB)."""
    wanted = ", ".join(f":status{i}" for i in range(len(statuses)))
    frames = warehouse.iter_frames(
        f"SELECT external_id FROM {STATE_TABLE} WHERE entity = :entity "
        f"AND data_source_uuid = :data_source_uuid AND status IN ({wanted or 'NULL'})",
        {
            "entity": str(entity),
            "data_source_uuid": data_source_uuid,
            **{f"status{i}": str(status) for i, status in enumerate(statuses)},
        },
    )
    ids = [as_id_array(frame["external_id"]) for frame in frames]
    return KnownIds.of(np.concatenate(ids) if ids else as_id_array([]))


def synced_ids(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> KnownIds:
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
    created = [e for e in latest.values() if e.created]
    if created:
        remember_created(
            warehouse,
            ((e.entity, e.data_source_uuid, e.external_id) for e in created),
            run_id=created[0].run_id,
            at=created[0].synced_at,
        )


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
    candidates = sorted(set(external_ids))
    new = [
        i
        for i, known in zip(candidates, existing.contains(np.array(candidates, dtype=object)), strict=True)
        if not known
    ]
    entries = [
        StateEntry(
            entity=entity,
            data_source_uuid=data_source_uuid,
            external_id=external_id,
            status=SyncStatus.WAITING,
            synced_at=at,
            run_id=run_id,
        )
        for external_id in new
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
    marked = ids_with_status(warehouse, entity, data_source_uuid, (SyncStatus.WAITING,))
    waiting = {external_id for external_id in external_ids if external_id in marked}
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
    entries = load_state(warehouse, entity, data_source_uuid, wanted)
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


# ---- deletes and erasures ------------------------------------------------------------------------


def entries_in_every_source(warehouse: Warehouse, entity: Entity, external_id: str) -> list[StateEntry]:
    """The entries of one external id in every data source (an erasure reads what was sent)."""
    frame = warehouse.query_frame(
        f"SELECT {', '.join(_COLUMNS)} FROM {STATE_TABLE} "
        "WHERE entity = :entity AND external_id = :external_id",
        {"entity": str(entity), "external_id": external_id},
    )
    return [_entry_of(entity, row) for row in frame.itertuples(index=False)]


def forget_entries(
    warehouse: Warehouse, entity: Entity, external_ids: Collection[str], *, data_source_uuid: str | None
) -> None:
    """Remove the entries of objects deleted from ChartMogul (one data source), or of an erased lead
    (every data source: `data_source_uuid` None), so that nothing of them stays in the state."""
    scope = "" if data_source_uuid is None else " AND data_source_uuid = :ds"
    for external_id in external_ids:
        warehouse.execute(
            f"DELETE FROM {STATE_TABLE} WHERE entity = :entity AND external_id = :external_id{scope}",
            {"entity": str(entity), "external_id": external_id, "ds": data_source_uuid},
        )


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
