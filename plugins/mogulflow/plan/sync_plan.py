"""Plan: compare what we would send with what the sync state says was sent.

The result, a `SyncPlan`, is the only thing the load step acts on: create what ChartMogul has never
seen, PATCH only the fields that changed, leave the rest alone.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mogulflow.values.entities import Entity
from mogulflow.values.field_equality import changed_fields
from mogulflow.values.payload_hash import content_hash
from mogulflow.warehouse.sync_state import StateEntry, SyncState, SyncStatus


class Payload(Protocol):
    """What every payload dataclass of `mogulflow.transform.payloads` offers."""

    @property
    def external_id(self) -> str: ...

    def fields(self) -> dict[str, Any]: ...

    def to_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PlannedCreate:
    """A payload ChartMogul has not confirmed yet (new, or its last write failed)."""

    payload: Payload
    source_updated_at: datetime | None = None

    @property
    def content_hash(self) -> str:
        """Hashed when the load records the write, not when planning: a dry run never needs it."""
        return content_hash(self.payload.fields())


@dataclass(frozen=True, slots=True)
class PlannedUpdate:
    """A payload whose fields changed since the last confirmed write."""

    payload: Payload
    content_hash: str
    chartmogul_uuid: str | None  # None after a bulk import, which does not answer with uuids
    changed_fields: Mapping[str, Any]
    status: SyncStatus = SyncStatus.SYNCED  # the status after the write (a merged lead stays merged)
    source_updated_at: datetime | None = None
    # The last write failed, or a reconciliation marked the row for re-sending: what ChartMogul holds
    # under its external id is in doubt, so the load confirms it before acting on the stored uuid.
    resend: bool = False


@dataclass(frozen=True)
class SyncPlan:
    """What one entity's load will do; every payload lands in exactly one of the three lists."""

    entity: Entity
    creates: tuple[PlannedCreate, ...]
    updates: tuple[PlannedUpdate, ...]
    unchanged: tuple[str, ...]
    # Unchanged rows an earlier step (or attempt) of this same run wrote: the run account counts them
    # as created (the customers step imports a new customer's trial invoices with it).
    written_this_run: tuple[str, ...] = ()
    # Unchanged rows whose entry has no ChartMogul uuid (a bulk import confirmed, its read-back did
    # not happen): the load reads their uuids back, so later changes need no look-up.
    missing_uuids: tuple[StateEntry, ...] = ()
    # How many entries the sync state holds for the entity in the data source: about what a listing of
    # the data source reads, which tells the load whether to confirm by listing or by lookups.
    state_size: int = 0

    @property
    def size(self) -> int:
        """How many payloads the plan covers."""
        return len(self.creates) + len(self.updates) + len(self.unchanged) + len(self.written_this_run)


@dataclass(frozen=True)
class PlanCounts:
    """How many payloads each list of a plan got, when the plan itself keeps only samples."""

    creates: int
    updates: int
    unchanged: int


def merge_plans(
    entity: Entity, plans: Iterable[SyncPlan], *, keep: int | None = None
) -> tuple[SyncPlan, PlanCounts]:
    """The plans of consecutive chunks of one entity's payloads, in order, as one plan and its counts.

    `plan_sync` decides row by row, so planning chunk by chunk and merging gives the plan of the
    whole. With `keep` (a dry run, which reports counts and samples) each list keeps only its first
    `keep` entries: the payloads of the other rows are freed with their chunk.
    """
    creates: list[PlannedCreate] = []
    updates: list[PlannedUpdate] = []
    unchanged: list[str] = []
    written: list[str] = []
    missing: list[StateEntry] = []
    counts = [0, 0, 0]
    state_size = 0
    for plan in plans:
        state_size = max(state_size, plan.state_size)
        for i, (merged, part) in enumerate(
            ((creates, plan.creates), (updates, plan.updates), (unchanged, plan.unchanged))
        ):
            counts[i] += len(part)
            merged.extend(part if keep is None else part[: max(0, keep - len(merged))])
        written.extend(plan.written_this_run)
        missing.extend(plan.missing_uuids)
    merged_plan = SyncPlan(
        entity, tuple(creates), tuple(updates), tuple(unchanged), tuple(written), tuple(missing), state_size
    )
    return merged_plan, PlanCounts(*counts)


def plan_sync(
    entity: Entity,
    payloads: Iterable[Payload],
    state: SyncState,
    *,
    versions: Mapping[str, datetime] | None = None,
    fields_after_merge: Collection[str] | None = None,
    run_id: str | None = None,
    state_size: int | None = None,
) -> SyncPlan:
    """Split payloads into creates, updates (with only the changed fields) and unchanged ids.

    `versions` gives each payload's source `updated_at`: a payload older than the version already
    synced is left alone, so re-running an old window never brings back an old row. For entries
    merged into another record (a lead merged into its paying customer), only `fields_after_merge`
    are sent: the surviving customer's own name and email are not ours to change. With `run_id`,
    unchanged rows this run already wrote land in `written_this_run` instead of `unchanged`.
    `state` needs only the entries of these payloads' ids; `state_size` is then how many the whole
    entity has (the plan's `state_size`; default: `len(state)`).
    """
    creates: list[PlannedCreate] = []
    updates: list[PlannedUpdate] = []
    unchanged: list[str] = []
    # A million small acyclic objects: without the pause the collector rescans them again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _split(payloads, state, versions or {}, fields_after_merge, creates, updates, unchanged)
    finally:
        if collecting:
            gc.enable()
    written: list[str] = []
    missing: list[StateEntry] = []
    if unchanged and state:
        kept = []
        for external_id in unchanged:
            entry = state[external_id]
            if entry.chartmogul_uuid is None and entry.status is SyncStatus.SYNCED:
                missing.append(entry)
            if run_id is not None and entry.run_id == run_id:
                written.append(external_id)
            else:
                kept.append(external_id)
        unchanged = kept
    return SyncPlan(
        entity,
        tuple(creates),
        tuple(updates),
        tuple(unchanged),
        tuple(written),
        tuple(missing),
        len(state) if state_size is None else state_size,
    )


def _split(
    payloads: Iterable[Payload],
    state: SyncState,
    versions: Mapping[str, datetime],
    fields_after_merge: Collection[str] | None,
    creates: list[PlannedCreate],
    updates: list[PlannedUpdate],
    unchanged: list[str],
) -> None:
    for payload in payloads:
        entry = state.get(payload.external_id)
        version = as_utc(versions.get(payload.external_id))
        if entry is None or (entry.chartmogul_uuid is None and entry.content_hash is None):
            creates.append(PlannedCreate(payload, version))
            continue
        fields = payload.fields()
        digest = content_hash(fields)
        failed = entry.status is SyncStatus.FAILED
        if not failed and entry.content_hash == digest:
            unchanged.append(payload.external_id)
        elif not failed and is_older(version, as_utc(entry.source_updated_at)):
            unchanged.append(payload.external_id)  # a newer version of this row was synced already
        else:
            diff = changed_fields(entry.payload, fields)
            merged = entry.status is SyncStatus.MERGED
            if merged:
                diff = {name: value for name, value in diff.items() if name in (fields_after_merge or ())}
            if not diff and not failed:
                unchanged.append(payload.external_id)
            else:
                # A failed update is re-sent whole: we cannot know which of its fields landed.
                sent = dict(fields) if failed else diff
                status = SyncStatus.MERGED if merged else SyncStatus.SYNCED
                updates.append(
                    PlannedUpdate(payload, digest, entry.chartmogul_uuid, sent, status, version, failed)
                )


def as_utc(moment: Any) -> datetime | None:
    """A naive-UTC or aware timestamp (datetime or pandas Timestamp) as an aware UTC datetime."""
    if moment is None or (type(moment) is datetime and moment.tzinfo is UTC):
        return moment
    moment = getattr(moment, "to_pydatetime", lambda: moment)()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def is_older(version: datetime | None, synced_version: datetime | None) -> bool:
    """Whether a source row's version is older than the one already synced (both known)."""
    return version is not None and synced_version is not None and version < synced_version
