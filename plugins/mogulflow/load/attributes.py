"""Load attributes and tags: carry out an `AttributePlan`, customer by customer, paced like every write.

All of one customer's writes of one entity go together, at most one request per kind: one `POST`
for the keys (tags) it adds, one `PUT` for the keys whose value changes, one `DELETE` for the keys
(tags) it removes (ChartMogul has no endpoint for several customers at once: docs/api-notes.md).

- A customer that gets a key or tag mogulflow does not own is read first (`GET` of the data source's
  customers by listing, or by lookup, whichever costs less: `mogulflow.load.confirm`): a key someone
  else set is left alone (the row fails, saying so, and is tried again next run); one that holds the
  value already counts as created when a create of this run carried it, else as unchanged (and
  stays the other's: mogulflow never adopts a key it did not set).
- Changes and removals go by the customer's uuid from the sync state; a 404 (the customer was
  deleted and made again, or merged away) looks it up by external id once and tries again.
- ChartMogul's answer is checked: a key it does not hold as sent fails the row.

A failed row keeps what mogulflow owned before in its state entry (status `failed`), so the next
run reads it again and still knows what is its own.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.errors import NotFoundError
from mogulflow.load.confirm import read_held
from mogulflow.load.writes import (
    LOAD_STOPPERS,
    Checkpoint,
    RowOutcome,
    RowTarget,
    Tally,
    Write,
    WriteResult,
    run_writes,
)
from mogulflow.plan.attributes import AttributeOp, AttributePlan, AttributeWrite
from mogulflow.transform.attributes import AttributePayload, TagPayload
from mogulflow.validate.rules import parse_attribute_timestamp
from mogulflow.values.entities import Entity
from mogulflow.values.payload_hash import content_hash
from mogulflow.values.run_summary import RowError
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse.sync_state import StateEntry, SyncedRows, SyncStatus

log = logging.getLogger(__name__)

Entry = dict[str, Any]

#: Rows per checkpoint. A first load confirms ~100,000 rows without a write of their own (their
#: creates carried them); each checkpoint is one upsert into the sync state, so fewer, larger ones.
#: A killed task loses at most these, and its retry confirms them again by reading, not writing.
ATTRIBUTE_CHECKPOINT_ROWS = 5000


@dataclass(frozen=True)
class CustomerRefs:
    """What the load knows of the leads' customers: uuids (sync state), and those a create of this run
    made with their attributes and tags."""

    uuids: Mapping[str, str]
    known_size: int  # about how many customers the data source holds: listing or lookups
    # Created in this run by a create request that carried their attributes and tags, and confirmed
    # by ChartMogul's answer (201, or the JSON import's per-customer status): theirs need no read.
    carried: Collection[str] = frozenset()


@dataclass
class _Stop:
    """The first batch-level failure (circuit open, key refused): every later customer fails at once."""

    reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_lead_attributes(
    client: ChartMogulClient,
    plan: AttributePlan,
    customers: CustomerRefs,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    save_synced: Callable[[SyncedRows], None],
    max_workers: int = 4,
    checkpoint_rows: int = ATTRIBUTE_CHECKPOINT_ROWS,
) -> tuple[LoadReport, int]:
    """Write the plan's attributes (or tags); the report counts the rows, plus how many keys (tags)
    no row names any more were removed (a full refresh's, outside the account)."""
    tally = Tally(plan.entity, plan.size)
    tally.counts[RowOutcome.UNCHANGED] += len(plan.unchanged)
    tally.counts[RowOutcome.CREATED] += len(plan.written_this_run)
    writer = _CustomerWriter(client, plan.entity, data_source_uuid, run_id, customers)
    by_lead: dict[str, list[AttributeWrite]] = {}
    carried, confirmed = customers.carried, []
    for write in plan.writes:
        lead = write.payload.lead_id
        if lead in carried and write.op is AttributeOp.ADD and write.previous is None and write.counted:
            confirmed.append(write)  # the create that made the customer in this run carried it
        else:
            by_lead.setdefault(lead, []).append(write)
    if confirmed:
        # no read, no write: their state in one pass (most of a first load's rows)
        save_synced(_synced_rows(plan.entity, data_source_uuid, run_id, confirmed, customers.uuids))
        tally.counts[RowOutcome.CREATED] += len(confirmed)
    adding = [lead for lead, writes in by_lead.items() if any(w.op is AttributeOp.ADD for w in writes)]
    held = read_held(
        client,
        Entity.LEAD,
        data_source_uuid,
        adding,
        known_size=customers.known_size,
        max_workers=max_workers,
    )
    stop = _Stop()
    outside: list[WriteResult] = []  # a full refresh's removals of keys no row names: not counted
    outside_lock = threading.Lock()

    def unit(lead_id: str, writes: list[AttributeWrite]) -> Write:
        def run() -> list[WriteResult]:
            if stop.reason is not None:
                return [writer.failed(w, RuntimeError(f"not attempted: {stop.reason}")) for w in writes]
            try:
                results = writer.write(lead_id, writes, held.get(lead_id), held.unknown.get(lead_id))
            except LOAD_STOPPERS as error:
                with stop.lock:
                    stop.reason = stop.reason or str(error)
                return [writer.failed(w, error) for w in writes]
            except Exception as error:  # this customer only
                return [writer.failed(w, error) for w in writes]
            # a removal outside the account is recorded in the state, not counted as a row
            with outside_lock:
                outside.extend(r for w, r in zip(writes, results, strict=True) if not w.counted)
            return [r for w, r in zip(writes, results, strict=True) if w.counted]

        return [w.payload.external_id for w in writes if w.counted], run

    aborted = run_writes(
        tally,
        writer.target,
        [unit(lead, writes) for lead, writes in by_lead.items()],
        checkpoint=checkpoint,
        max_workers=max_workers,
        checkpoint_rows=checkpoint_rows,
    )
    if outside:
        checkpoint([result.entry for result in outside])
    removed = sum(1 for result in outside if result.outcome is not RowOutcome.FAILED)
    return tally.report(aborted or stop.reason), removed


def _synced_rows(
    entity: Entity,
    data_source_uuid: str,
    run_id: str,
    writes: Sequence[AttributeWrite],
    uuids: Mapping[str, str],
) -> SyncedRows:
    """The state of writes confirmed without a request: what `_CustomerWriter.confirmed` records for
    each, as columns (each payload's fields built once, for its hash and its state)."""
    fields = [write.payload.fields() for write in writes]
    return SyncedRows(
        entity=entity,
        data_source_uuid=data_source_uuid,
        run_id=run_id,
        synced_at=datetime.now(UTC),
        external_ids=[write.payload.external_id for write in writes],
        chartmogul_uuids=[uuids.get(write.payload.lead_id) for write in writes],
        content_hashes=[content_hash(row) for row in fields],
        payloads=fields,
        source_updated_at=[write.version for write in writes],
    )


class _CustomerWriter:
    """One customer's writes of one entity, and the state entry of each row."""

    def __init__(
        self, client: ChartMogulClient, entity: Entity, data_source_uuid: str, run_id: str, refs: CustomerRefs
    ) -> None:
        self.client = client
        self.entity = entity
        self.data_source_uuid = data_source_uuid
        self.run_id = run_id
        self.refs = refs
        # for `run_writes`, whose own failure path only a unit that raises would reach (none does)
        self.target = RowTarget(entity, data_source_uuid, run_id)

    # ---- one customer

    def write(
        self, lead_id: str, writes: list[AttributeWrite], held: Entry | None, unreadable: Exception | None
    ) -> list[WriteResult]:
        """Every write of one customer, in the order given; one result per write."""
        if unreadable is not None:
            return [
                self.failed(w, RuntimeError(f"could not read the customer: {unreadable}")) for w in writes
            ]
        adds = [w for w in writes if w.op is AttributeOp.ADD]
        if adds and held is None:
            message = f"no customer with external id {lead_id!r} in the data source (its lead failed?)"
            return [self.failed(w, RuntimeError(message)) for w in writes]
        uuid = str(held["uuid"]) if held is not None else self.refs.uuids.get(lead_id)
        results: dict[int, WriteResult] = {}
        to_send: list[AttributeWrite] = []
        holding = _held_values(self.entity, held)
        for write in writes:
            settled = None
            if write.op is AttributeOp.ADD and _key(write) in holding:
                settled = self._already_held(lead_id, write, holding[_key(write)], uuid)
            if settled is None:
                to_send.append(write)
            else:
                results[id(write)] = settled
        for op, group in _by_request(self.entity, to_send).items():
            uuid, answer = self._send(lead_id, uuid, op, group)
            for write in group:
                results[id(write)] = answer(write)
        return [results[id(write)] for write in writes]

    def _already_held(
        self, lead_id: str, write: AttributeWrite, value: Any, uuid: str | None
    ) -> WriteResult | None:
        """A key or tag to add that the customer holds already: its result, or None to send it anyway."""
        payload = write.payload
        if isinstance(payload, AttributePayload) and not same_value(payload.type, value, payload.value):
            if write.previous is not None:
                return None  # mogulflow's own key, set again (a failed write, a reconciliation's resend)
            message = (
                f"custom attribute {payload.key!r} of lead {lead_id!r} is set by someone else in ChartMogul "
                f"(to {value!r}; the warehouse says {payload.value!r}): mogulflow leaves it. Remove it in "
                "ChartMogul to let mogulflow set it, or rename the key in the warehouse"
            )
            return self.failed(write, RuntimeError(message), retriable=False)
        if write.previous is not None:
            return self.confirmed(write, RowOutcome.UNCHANGED, uuid)  # mogulflow's own, as it was
        if lead_id in self.refs.carried:
            return self.confirmed(write, RowOutcome.CREATED, uuid)  # carried by the create
        # Someone else's, with the value the warehouse has: it stays theirs (never changed nor removed);
        # the entry's hash spares the next runs the read, its payload says mogulflow owns nothing there.
        entry = self._entry(write, SyncStatus.SYNCED, write.content_hash, _owning_nothing(write), uuid)
        return WriteResult(RowOutcome.UNCHANGED, entry)

    def _send(
        self, lead_id: str, uuid: str | None, op: str, group: list[AttributeWrite]
    ) -> tuple[str | None, Callable[[AttributeWrite], WriteResult]]:
        """One request for the group; a 404 on a stored uuid looks the customer up once and retries."""
        if uuid is None:
            uuid = self._look_up(lead_id)
        try:
            try:
                answer = self._request(uuid, op, group)
            except NotFoundError:
                found = self._look_up(lead_id)
                if found == uuid:
                    raise
                uuid = found
                answer = self._request(uuid, op, group)
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            return uuid, lambda write, refused=error: self.failed(write, refused)
        return uuid, lambda write: self._settled(write, op, answer, uuid)

    def _look_up(self, lead_id: str) -> str:
        found = self.client.find_customer(self.data_source_uuid, lead_id)
        if found is None:
            raise NotFoundError(f"no customer with external id {lead_id!r} in the data source", status=404)
        return str(found["uuid"])

    def _request(self, uuid: str, op: str, group: list[AttributeWrite]) -> Any:
        client, payloads = self.client, [w.payload for w in group]
        if op == "post_custom":
            return client.add_custom_attributes(uuid, [p.to_api() for p in payloads])
        if op == "put_custom":
            return client.update_custom_attributes(
                uuid, {p.key: p.value for p in payloads if isinstance(p, AttributePayload)}
            )
        if op == "delete_custom":
            return client.remove_custom_attributes(
                uuid, [p.key for p in payloads if isinstance(p, AttributePayload)]
            )
        if op == "post_tags":
            return client.add_tags(uuid, [p.tag for p in payloads if isinstance(p, TagPayload)])
        return client.remove_tags(uuid, [p.tag for p in payloads if isinstance(p, TagPayload)])

    def _settled(self, write: AttributeWrite, op: str, answer: Any, uuid: str) -> WriteResult:
        """The write's outcome, once the answer (every custom attribute, or every tag, after it) shows it."""
        payload = write.payload
        outcome = (
            RowOutcome.CREATED
            if write.op is AttributeOp.ADD and write.previous is None
            else RowOutcome.UPDATED
        )
        if isinstance(payload, AttributePayload) and isinstance(answer, dict) and answer != {}:
            held = answer.get(payload.key)
            landed = (
                (payload.key not in answer)
                if payload.removes
                else same_value(payload.type, held, payload.value)
            )
            if not landed:
                return self.failed(write, RuntimeError(f"ChartMogul's answer holds {payload.key}={held!r}"))
        if (
            isinstance(payload, TagPayload)
            and isinstance(answer, list)
            and (payload.tag in answer) == payload.removes
        ):
            return self.failed(write, RuntimeError(f"ChartMogul's answer holds the tags {answer!r}"))
        return self.confirmed(write, outcome, uuid)

    # ---- state entries

    def confirmed(self, write: AttributeWrite, outcome: RowOutcome, uuid: str | None) -> WriteResult:
        entry = self._entry(write, SyncStatus.SYNCED, write.content_hash, write.payload.fields(), uuid)
        return WriteResult(outcome, entry)

    def failed(self, write: AttributeWrite, error: Exception, *, retriable: bool = True) -> WriteResult:
        """A failed row: status `failed`, keeping what mogulflow owned before (not what it meant)."""
        status = getattr(error, "status", None)
        problem = RowError(
            self.entity, write.payload.external_id, str(error) or type(error).__name__, status, retriable
        )
        return WriteResult(
            RowOutcome.FAILED, self._entry(write, SyncStatus.FAILED, None, write.previous), problem
        )

    def _entry(
        self,
        write: AttributeWrite,
        status: SyncStatus,
        digest: str | None,
        payload: Mapping[str, Any] | None,
        uuid: str | None = None,
    ) -> StateEntry:
        return StateEntry(
            entity=self.entity,
            data_source_uuid=self.data_source_uuid,
            external_id=write.payload.external_id,
            status=status,
            synced_at=datetime.now(UTC),
            run_id=self.run_id,
            chartmogul_uuid=uuid,
            content_hash=digest,
            payload=payload,
            source_updated_at=write.version,
        )


def _owning_nothing(write: AttributeWrite) -> dict[str, Any]:
    """The state payload of a key or tag someone else holds with the warehouse's value: mogulflow owns
    nothing there (`mogulflow.plan.attributes.owns`), and a reconciliation leaves it out (`theirs`)."""
    payload = write.payload
    if isinstance(payload, TagPayload):
        return {**payload.fields(), "present": False, "theirs": True}
    return {**payload.fields(), "value": None, "theirs": True}


def _key(write: AttributeWrite) -> str:
    payload = write.payload
    return payload.key if isinstance(payload, AttributePayload) else payload.tag


def _held_values(entity: Entity, customer: Entry | None) -> dict[str, Any]:
    """What the customer holds: its custom attributes by key, or its tags (as keys)."""
    attributes = (customer or {}).get("attributes") or {}
    if entity is Entity.TAG:
        return {str(tag): True for tag in attributes.get("tags") or []}
    return dict(attributes.get("custom") or {})


def _by_request(entity: Entity, writes: Sequence[AttributeWrite]) -> dict[str, list[AttributeWrite]]:
    """The writes grouped by the one request each goes in."""
    groups: dict[str, list[AttributeWrite]] = {}
    for write in writes:
        if entity is Entity.TAG:
            request = "delete_tags" if write.op is AttributeOp.REMOVE else "post_tags"
        elif write.op is AttributeOp.REMOVE:
            request = "delete_custom"
        elif write.op is AttributeOp.CHANGE:
            request = "put_custom"
        else:
            request = "post_custom"
        groups.setdefault(request, []).append(write)
    return groups


def same_value(kind: str, held: Any, meant: Any) -> bool:
    """Whether ChartMogul's value is the one meant, by the type (a timestamp in any ISO form, a number
    as int or float)."""
    if held is None or meant is None:
        return held is meant
    if kind == "Timestamp":
        return parse_attribute_timestamp(str(held)) == parse_attribute_timestamp(str(meant))
    if kind in ("Decimal", "Integer") and not isinstance(held, bool):
        try:
            return math.isclose(float(held), float(meant), rel_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return bool(held == meant)
