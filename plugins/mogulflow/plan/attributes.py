"""Plan attributes and tags: per (lead, key) or (lead, tag), what to write, by diff with the sync state.

The sync state remembers, per `lead_id/key` (`lead_id/tag`), what mogulflow last set: that is what
mogulflow owns. A row whose content hash equals the remembered one is unchanged; otherwise:

- a value (a present tag) on a key mogulflow does not own, or whose last write failed → `ADD` (the
  load first reads the customer: a key someone else set is never overwritten);
- a new value on an owned key → `CHANGE` (same type) or `REPLACE` (another type: sent with it);
- a null value (`present` false) → `REMOVE` when mogulflow owns the key, else nothing to do;
- on a full refresh, an owned key that no row names any more → `REMOVE`, outside the run's account
  (no extracted row stands for it); a lead with a rejected row keeps its keys (the bad row may name them).

One plan for both entities: `AttributeWrite.payload` is an `AttributePayload` or a `TagPayload`.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mogulflow.plan.sync_plan import as_utc, is_older
from mogulflow.transform.attributes import AttributePayload, LeadPayload, TagPayload
from mogulflow.values.entities import Entity
from mogulflow.values.payload_hash import content_hash
from mogulflow.warehouse.sync_state import StateEntry, SyncState, SyncStatus


class AttributeOp(enum.StrEnum):
    """What one attribute or tag write does."""

    ADD = "add"  # a key or tag mogulflow does not own: set it, unless someone else has
    CHANGE = "change"  # an owned key, a new value of the same type (PUT)
    REPLACE = "replace"  # an owned key, a value of another type (POST with its type)
    REMOVE = "remove"  # an owned key or tag goes


@dataclass(frozen=True, slots=True)
class AttributeWrite:
    """One planned write: the payload, what it does, and what the sync state held before."""

    payload: LeadPayload
    op: AttributeOp
    version: datetime | None
    previous: Mapping[str, Any] | None  # what mogulflow last set (None: it owns nothing there)
    counted: bool = True  # False for a full refresh's removal of a key no row names

    @property
    def content_hash(self) -> str:
        return content_hash(self.payload.fields())


@dataclass(frozen=True)
class AttributePlan:
    """One entity's plan: the writes, and the rows that need none."""

    entity: Entity
    writes: tuple[AttributeWrite, ...]
    unchanged: tuple[str, ...]
    written_this_run: tuple[str, ...] = ()  # an earlier attempt of this run wrote them: created

    @property
    def counted_writes(self) -> int:
        """Writes that stand for an extracted row."""
        return sum(1 for write in self.writes if write.counted)

    @property
    def size(self) -> int:
        """How many extracted rows the plan covers."""
        return self.counted_writes + len(self.unchanged) + len(self.written_this_run)


def owns(entry: StateEntry | None) -> bool:
    """Whether the sync state says mogulflow set this key or tag (and has not removed it since)."""
    if entry is None or not entry.payload or entry.status not in (SyncStatus.SYNCED, SyncStatus.FAILED):
        return False
    payload = entry.payload
    return bool(payload.get("present")) if "tag" in payload else payload.get("value") is not None


def plan_lead_attributes(
    entity: Entity,
    payloads: Iterable[LeadPayload],
    state: SyncState,
    *,
    versions: Mapping[str, datetime] | None = None,
    run_id: str | None = None,
    full_refresh: bool = False,
    leads_with_rejects: Collection[str] = (),
) -> AttributePlan:
    """Plan one entity's rows (see the module's rules); `state`: the entity's sync state entries."""
    writes: list[AttributeWrite] = []
    unchanged: list[str] = []
    written: list[str] = []
    named: set[str] = set()
    for payload in payloads:
        external_id = payload.external_id
        named.add(external_id)
        entry = state.get(external_id)
        version = as_utc((versions or {}).get(external_id))
        synced = entry is not None and entry.status is SyncStatus.SYNCED
        if synced and entry is not None and entry.content_hash == content_hash(payload.fields()):
            (written if run_id is not None and entry.run_id == run_id else unchanged).append(external_id)
            continue
        if synced and entry is not None and is_older(version, as_utc(entry.source_updated_at)):
            unchanged.append(external_id)  # a newer version of this row was synced already
            continue
        op = _op(payload, entry)
        if op is None:
            unchanged.append(external_id)
        else:
            previous = entry.payload if owns(entry) and entry is not None else None
            writes.append(AttributeWrite(payload, op, version, previous))
    if full_refresh:
        spared = set(leads_with_rejects)
        for external_id, entry in state.items():
            if external_id in named or not owns(entry) or entry.payload is None:
                continue
            if str(entry.payload.get("lead_id")) in spared:
                continue
            gone = _removal_of(entry.payload)
            writes.append(AttributeWrite(gone, AttributeOp.REMOVE, None, entry.payload, counted=False))
    return AttributePlan(entity, tuple(writes), tuple(unchanged), tuple(written))


def _op(payload: LeadPayload, entry: StateEntry | None) -> AttributeOp | None:
    owned = owns(entry)
    if payload.removes:
        return AttributeOp.REMOVE if owned else None
    if not owned or entry is None or entry.payload is None or entry.status is SyncStatus.FAILED:
        # not ours yet, or a write (or a reconciliation) left in doubt what the customer holds: read first
        return AttributeOp.ADD
    if isinstance(payload, TagPayload):
        # An owned tag whose entry failed: add it again (adding a held tag changes nothing).
        return AttributeOp.ADD
    return AttributeOp.CHANGE if entry.payload.get("type") == payload.type else AttributeOp.REPLACE


def _removal_of(previous: Mapping[str, Any]) -> LeadPayload:
    """The payload that removes what `previous` (a sync state payload) set."""
    if "tag" in previous:
        return TagPayload(str(previous["lead_id"]), str(previous["tag"]), False)
    return AttributePayload(str(previous["lead_id"]), str(previous["key"]), str(previous.get("type")), None)
