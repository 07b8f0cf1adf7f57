"""Load: carry out a `SyncPlan` through a ChartMogul client, checkpointing as writes are confirmed.

Row-level problems (a 422 for one customer, a write that outlived its retries) are data: they end
as `failed` rows in the result and in the sync state, and the next run retries them. Only a
batch-level failure (the client's circuit breaker opening) stops a load early, and even then every
confirmed write has been checkpointed and every remaining row is counted as failed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mogulflow.api.errors import AuthenticationError, ChartMogulError, CircuitOpenError
from mogulflow.model import Entity, RowError
from mogulflow.plan import PlannedCreate, PlannedUpdate, SyncPlan
from mogulflow.record import STATUS_FAILED, STATUS_SYNCED, StateEntry
from mogulflow.transform import CustomerPayload, TrialInvoice

log = logging.getLogger(__name__)

# Errors that say the whole load cannot succeed: stop at once instead of failing row after row.
LOAD_STOPPERS = (CircuitOpenError, AuthenticationError)

DEFAULT_CHECKPOINT_ROWS = 200
PROGRESS_EVERY_ROWS = 500

Checkpoint = Callable[[Sequence[StateEntry]], None]

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
FAILED = "failed"


@dataclass(frozen=True)
class WriteResult:
    """How one planned write ended, with the state entry that records it."""

    outcome: str  # created, updated, unchanged, failed
    entries: tuple[StateEntry, ...]
    error: RowError | None = None


@dataclass(frozen=True)
class LoadResult:
    """What one entity's load did; `created + updated + unchanged + failed` covers the whole plan."""

    entity: Entity
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: tuple[RowError, ...] = ()
    aborted: str | None = None  # why the load stopped early, if it did


@dataclass
class _Tally:
    entity: Entity
    planned: int
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[RowError] = field(default_factory=list)
    pending: list[StateEntry] = field(default_factory=list)

    def add(self, result: WriteResult, rows: int = 1) -> None:
        self.counts[result.outcome] += rows
        self.pending.extend(result.entries)
        if result.error is not None:
            self.errors.append(result.error)

    @property
    def done(self) -> int:
        return sum(self.counts.values())


def _now() -> datetime:
    return datetime.now(UTC)


def _entry(
    entity: Entity,
    data_source_uuid: str,
    external_id: str,
    run_id: str,
    *,
    uuid: str | None,
    digest: str | None,
    payload: Mapping[str, Any] | None,
    status: str = STATUS_SYNCED,
    version: datetime | None = None,
) -> StateEntry:
    return StateEntry(
        entity, data_source_uuid, external_id, uuid, digest, payload, status, _now(), run_id, version
    )


def _failure(
    entity: Entity,
    data_source_uuid: str,
    run_id: str,
    external_id: str,
    uuid: str | None,
    error: Exception,
    intended: Mapping[str, Any] | None = None,
) -> WriteResult:
    """A failed row: state `failed` (re-read and re-sent by the next run), keeping what we meant to send."""
    status = getattr(error, "status", None)
    message = str(error) or type(error).__name__
    retriable = not (isinstance(error, ChartMogulError) and status is not None and 400 <= status < 500)
    return WriteResult(
        FAILED,
        (
            _entry(
                entity,
                data_source_uuid,
                external_id,
                run_id,
                uuid=uuid,
                digest=None,
                payload=intended,
                status=STATUS_FAILED,
            ),
        ),
        RowError(entity, external_id, message, status, retriable),
    )


def _run_writes(
    tally: _Tally,
    writes: Sequence[tuple[Sequence[str], Callable[[], WriteResult | list[WriteResult]]]],
    *,
    checkpoint: Checkpoint,
    max_workers: int,
    checkpoint_rows: int,
    fail: Callable[[str, Exception], WriteResult],
) -> str | None:
    """Run writes on a thread pool, checkpoint confirmed ones, stop early if the circuit opens.

    Each write is (the external ids it covers, the call). Returns the abort reason, if any.
    """
    aborted: str | None = None
    last_logged = 0
    queue = list(writes)
    queue.reverse()
    in_flight: dict[Future, Sequence[str]] = {}

    def flush(force: bool = False) -> None:
        nonlocal last_logged
        if tally.pending and (force or len(tally.pending) >= checkpoint_rows):
            checkpoint(list(tally.pending))
            tally.pending.clear()
        if force or tally.done - last_logged >= PROGRESS_EVERY_ROWS:
            last_logged = tally.done
            log.info(
                "%s: %d/%d rows done (%s)",
                tally.entity,
                tally.done,
                tally.planned,
                ", ".join(f"{k} {v}" for k, v in sorted(tally.counts.items())) or "nothing yet",
            )

    with ThreadPoolExecutor(
        max_workers=max(1, max_workers), thread_name_prefix=f"load-{tally.entity}"
    ) as pool:
        while queue or in_flight:
            while queue and aborted is None and len(in_flight) < max_workers * 2:
                ids, call = queue.pop()
                in_flight[pool.submit(call)] = ids
            if not in_flight:
                break
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                ids = in_flight.pop(future)
                try:
                    outcome = future.result()
                except LOAD_STOPPERS as error:
                    aborted = aborted or str(error)
                    for external_id in ids:
                        tally.add(fail(external_id, error))
                    continue
                except Exception as error:  # a row-level failure the client did not classify
                    for external_id in ids:
                        tally.add(fail(external_id, error))
                    continue
                for result in outcome if isinstance(outcome, list) else [outcome]:
                    tally.add(result)
            flush()
            if aborted is not None and queue:
                # The API keeps refusing: do not march through the rest, count it as failed now.
                reason = RuntimeError(f"not attempted, the load stopped early: {aborted}")
                while queue:
                    ids, _ = queue.pop()
                    for external_id in ids:
                        tally.add(fail(external_id, reason))
    flush(force=True)
    return aborted


def _result(tally: _Tally, aborted: str | None) -> LoadResult:
    return LoadResult(
        tally.entity,
        created=tally.counts[CREATED],
        updated=tally.counts[UPDATED],
        unchanged=tally.counts[UNCHANGED],
        failed=tally.counts[FAILED],
        errors=tuple(tally.errors),
        aborted=aborted,
    )


def _load_objects(
    client: Any,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    max_workers: int,
    checkpoint_rows: int,
    upsert: Callable[[dict[str, Any]], Any],
    update: Callable[[str, dict[str, Any]], Any],
) -> LoadResult:
    entity = plan.entity
    tally = _Tally(entity, plan.size)
    tally.counts[UNCHANGED] += len(plan.unchanged)

    def fail(external_id: str, error: Exception) -> WriteResult:
        return _failure(entity, data_source_uuid, run_id, external_id, None, error)

    def create(item: PlannedCreate) -> WriteResult:
        outcome = upsert(item.payload.to_api(data_source_uuid))
        kind = CREATED if outcome.created else (UPDATED if outcome.updated else UNCHANGED)
        return WriteResult(
            kind,
            (
                _entry(
                    entity,
                    data_source_uuid,
                    item.payload.external_id,
                    run_id,
                    uuid=outcome.uuid,
                    digest=item.content_hash,
                    payload=item.payload.fields(),
                    version=item.source_updated_at,
                ),
            ),
        )

    def patch(item: PlannedUpdate) -> WriteResult:
        uuid = item.chartmogul_uuid
        if uuid is None:
            # Written by a bulk import, which does not answer with uuids: upsert finds it by external id.
            uuid = upsert(item.payload.to_api(data_source_uuid)).uuid
        else:
            update(uuid, dict(item.changed_fields))
        return WriteResult(
            UPDATED,
            (
                _entry(
                    entity,
                    data_source_uuid,
                    item.payload.external_id,
                    run_id,
                    uuid=uuid,
                    digest=item.content_hash,
                    payload=item.payload.fields(),
                    status=item.status,
                    version=item.source_updated_at,
                ),
            ),
        )

    def guarded(call: Callable[[], WriteResult], payload: Any, uuid: str | None) -> Callable[[], WriteResult]:
        def run() -> WriteResult:
            try:
                return call()
            except LOAD_STOPPERS:
                raise
            except Exception as error:
                return _failure(
                    entity, data_source_uuid, run_id, payload.external_id, uuid, error, payload.fields()
                )

        return run

    writes: list[tuple[Sequence[str], Callable[[], WriteResult]]] = []
    for item in plan.creates:
        writes.append(([item.payload.external_id], guarded(lambda i=item: create(i), item.payload, None)))
    for item in plan.updates:
        writes.append(
            (
                [item.payload.external_id],
                guarded(lambda i=item: patch(i), item.payload, item.chartmogul_uuid),
            )
        )
    aborted = _run_writes(
        tally,
        writes,
        checkpoint=checkpoint,
        max_workers=max_workers,
        checkpoint_rows=checkpoint_rows,
        fail=fail,
    )
    return _result(tally, aborted)


# Which client methods create-or-adopt and PATCH each kind of object.
_OBJECT_WRITES = {
    Entity.LEAD: ("upsert_customer", "update_customer"),
    Entity.PLAN: ("upsert_plan", "update_plan"),
}


def load_objects(
    client: Any,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadResult:
    """Create new customers or plans (idempotently), PATCH changed ones, checkpoint confirmed writes."""
    upsert, update = (getattr(client, name) for name in _OBJECT_WRITES[plan.entity])
    return _load_objects(
        client,
        plan,
        data_source_uuid=data_source_uuid,
        run_id=run_id,
        checkpoint=checkpoint,
        max_workers=max_workers,
        checkpoint_rows=checkpoint_rows,
        upsert=upsert,
        update=update,
    )


def load_trial_invoices(
    client: Any,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    customer_uuid_by_lead: Mapping[str, str],
    plan_uuid_by_plan: Mapping[str, str],
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadResult:
    """Import one trial invoice per trial, all of a customer's in one request.

    A changed trial's invoice is deleted and imported again (ChartMogul has no in-place edit of a
    trial line item that keeps its external id). Trials whose customer or plan did not sync in
    this or an earlier run fail, and are retried by the next run.
    """
    entity = plan.entity
    tally = _Tally(entity, plan.size)
    tally.counts[UNCHANGED] += len(plan.unchanged)

    def fail(external_id: str, error: Exception) -> WriteResult:
        return _failure(entity, data_source_uuid, run_id, external_id, None, error)

    items: list[tuple[TrialInvoice, str, str | None]] = [
        (c.payload, c.content_hash, None) for c in plan.creates
    ] + [(u.payload, u.content_hash, u.chartmogul_uuid) for u in plan.updates]

    updated_ids = {u.payload.external_id for u in plan.updates}
    version_by_id = {i.payload.external_id: i.source_updated_at for i in (*plan.creates, *plan.updates)}
    by_customer: dict[str, list[tuple[TrialInvoice, str, str | None]]] = defaultdict(list)
    writes: list[tuple[Sequence[str], Callable[[], WriteResult | list[WriteResult]]]] = []
    for invoice, digest, old_uuid in items:
        customer_uuid = customer_uuid_by_lead.get(invoice.customer_external_id)
        plan_uuid = plan_uuid_by_plan.get(invoice.plan_external_id)
        if customer_uuid is None or plan_uuid is None:
            missing = (
                "customer " + invoice.customer_external_id
                if customer_uuid is None
                else "plan " + invoice.plan_external_id
            )
            tally.add(fail(invoice.external_id, LookupError(f"{missing} is not synced to ChartMogul yet")))
            continue
        by_customer[customer_uuid].append((invoice, digest, old_uuid))

    def import_for(
        customer_uuid: str, group: list[tuple[TrialInvoice, str, str | None]]
    ) -> list[WriteResult]:
        results: list[WriteResult] = []
        replaced: set[str] = set()
        for invoice, _digest, old_uuid in group:
            if old_uuid is None and invoice.external_id in updated_ids:
                found = client.find_invoice(data_source_uuid, invoice.external_id)  # bulk-imported
                old_uuid = found["uuid"] if found else None
                if old_uuid is None:
                    replaced.add(invoice.external_id)  # gone from ChartMogul: import it again
            if old_uuid is not None:
                try:
                    client.delete_invoice(old_uuid)
                except Exception as error:
                    if getattr(error, "status", None) != 404:
                        results.append(
                            _failure(entity, data_source_uuid, run_id, invoice.external_id, old_uuid, error)
                        )
                        continue
                replaced.add(invoice.external_id)
        sendable = [g for g in group if g[0].external_id not in updated_ids or g[0].external_id in replaced]
        if not sendable:
            return results
        bodies = [
            inv.to_api(plan_uuid=plan_uuid_by_plan[inv.plan_external_id], data_source_uuid=data_source_uuid)
            for inv, _, _ in sendable
        ]
        try:
            answer = client.import_invoices(customer_uuid, bodies)
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            return results + [
                _failure(entity, data_source_uuid, run_id, inv.external_id, None, error)
                for inv, _, _ in sendable
            ]
        for invoice, digest, _old in sendable:
            ext = invoice.external_id
            if ext in answer.errors:
                results.append(
                    WriteResult(
                        FAILED,
                        (
                            _entry(
                                entity,
                                data_source_uuid,
                                ext,
                                run_id,
                                uuid=None,
                                digest=None,
                                payload=None,
                                status=STATUS_FAILED,
                            ),
                        ),
                        RowError(entity, ext, answer.errors[ext], 422, False),
                    )
                )
                continue
            uuid = answer.imported.get(ext) or answer.already_present.get(ext)
            kind = UPDATED if ext in replaced else (CREATED if ext in answer.imported else UNCHANGED)
            results.append(
                WriteResult(
                    kind,
                    (
                        _entry(
                            entity,
                            data_source_uuid,
                            ext,
                            run_id,
                            uuid=uuid,
                            digest=digest,
                            payload=invoice.fields(),
                            version=version_by_id.get(ext),
                        ),
                    ),
                )
            )
        return results

    for customer_uuid, group in by_customer.items():
        ids = [inv.external_id for inv, _, _ in group]
        writes.append((ids, lambda c=customer_uuid, g=group: import_for(c, g)))
    aborted = _run_writes(
        tally,
        writes,
        checkpoint=checkpoint,
        max_workers=max_workers,
        checkpoint_rows=checkpoint_rows,
        fail=fail,
    )
    return _result(tally, aborted)


def uuids_by_external_id(entries: Iterable[StateEntry]) -> dict[str, str]:
    """External id → ChartMogul uuid for the entries that have one."""
    return {
        e.external_id: e.chartmogul_uuid for e in entries if e.chartmogul_uuid and e.status != STATUS_FAILED
    }


# ---- bulk path ---------------------------------------------------------------------------------
# Above BULK_THRESHOLD new objects, creates go through JSON imports (one request per few hundred
# customers instead of one per customer); updates and small loads stay per object.

BULK_THRESHOLD_ENV = "MOGULFLOW_BULK_THRESHOLD"
DEFAULT_BULK_THRESHOLD = 500
BULK_CUSTOMERS_PER_IMPORT = 500
BULK_INVOICES_PER_IMPORT = 1000
BULK_POLL_SECONDS = 2.0
BULK_TIMEOUT_SECONDS = 1800.0


def bulk_threshold() -> int:
    """New objects from which a load uses JSON imports (`$MOGULFLOW_BULK_THRESHOLD`; 0 = never)."""
    import os

    value = os.environ.get(BULK_THRESHOLD_ENV, "").strip()
    return int(value) if value else DEFAULT_BULK_THRESHOLD


def uses_bulk(plan: SyncPlan, threshold: int | None = None) -> bool:
    """Whether the plan's creates are many enough for the bulk path."""
    limit = bulk_threshold() if threshold is None else threshold
    return limit > 0 and len(plan.creates) >= limit


def import_external_id(run_id: str, entity: Entity, external_ids: Iterable[str]) -> str:
    """A deterministic id for one JSON import: a retried task re-submitting the same chunk gets
    'already taken' and follows the first submission instead of importing twice."""
    import hashlib

    digest = hashlib.sha256("\n".join([run_id, str(entity), *external_ids]).encode()).hexdigest()
    return f"mogulflow-{entity}-{digest[:24]}"


@dataclass(frozen=True)
class BulkOutcome:
    """What the bulk path did, and the creates it handed back for the per-object path."""

    result: LoadResult
    leftover: tuple[PlannedCreate, ...]


def combine(first: LoadResult, second: LoadResult) -> LoadResult:
    """Two partial loads of one entity as one result."""
    return LoadResult(
        first.entity,
        created=first.created + second.created,
        updated=first.updated + second.updated,
        unchanged=first.unchanged + second.unchanged,
        failed=first.failed + second.failed,
        errors=first.errors + second.errors,
        aborted=first.aborted or second.aborted,
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _part_failure(part: Mapping[str, Any] | None, external_id: str) -> str | None:
    """The error text a JSON import's status_details part gives for one record, if it failed."""
    if part is None:
        return "not reported by the JSON import"
    if part.get("status") != "failed":
        return None
    errors = part.get("errors") or {}
    if isinstance(errors, Mapping) and external_id in errors:
        return str(errors[external_id])
    if isinstance(errors, Mapping) and errors and all(isinstance(v, Mapping) for v in errors.values()):
        return None  # the part lists other records' failures, not this one's
    return str(errors) or "failed in the JSON import"


@dataclass
class _BulkRun:
    """The chunk loop both bulk loads share: submit, read per-record outcomes, checkpoint."""

    client: Any
    entity: Entity
    data_source_uuid: str
    run_id: str
    checkpoint: Checkpoint
    tally: _Tally
    imported: list[PlannedCreate] = field(default_factory=list)
    leftover: list[PlannedCreate] = field(default_factory=list)
    aborted: str | None = None

    def fail(self, item: PlannedCreate, error: Exception) -> None:
        self.tally.add(
            _failure(self.entity, self.data_source_uuid, self.run_id, item.payload.external_id, None, error)
        )

    def run(
        self,
        chunks: Iterable[Sequence[PlannedCreate]],
        build_payload: Callable[[Sequence[PlannedCreate]], dict[str, Any]],
        problem_of: Callable[[PlannedCreate, Mapping[str, Any]], str | None],
    ) -> None:
        """Import chunk after chunk; after a missing endpoint the rest is `leftover`, after a
        load-stopping error the rest fails unattempted."""
        from mogulflow.api.errors import BulkImportUnsupportedError

        for chunk in chunks:
            if self.aborted is not None:
                for item in chunk:
                    self.fail(item, RuntimeError(f"not attempted, the load stopped early: {self.aborted}"))
                continue
            if self.leftover:
                self.leftover.extend(chunk)  # the endpoint is missing: the per-object path takes the rest
                continue
            ids = [item.payload.external_id for item in chunk]
            payload = {
                "external_id": import_external_id(self.run_id, self.entity, ids),
                **build_payload(chunk),
            }
            try:
                answer = self.client.run_json_import(
                    self.data_source_uuid,
                    payload,
                    poll_interval=BULK_POLL_SECONDS,
                    timeout=BULK_TIMEOUT_SECONDS,
                )
            except BulkImportUnsupportedError:
                log.info("The API has no JSON import endpoint: %s rows go one by one instead.", self.entity)
                self.leftover.extend(chunk)
                continue
            except LOAD_STOPPERS as error:
                self.aborted = str(error)
                for item in chunk:
                    self.fail(item, error)
                continue
            except Exception as error:  # the whole chunk failed: its rows fail, the next run retries them
                for item in chunk:
                    self.fail(item, error)
                continue
            details = answer.get("status_details") or {}
            for item in chunk:
                problem = problem_of(item, details)
                if problem is not None:
                    self.fail(item, RuntimeError(f"JSON import {payload['external_id']}: {problem}"))
                    continue
                self.imported.append(item)
                self.tally.add(WriteResult(CREATED, (self.entry(item, uuid=None),)))
            self.checkpoint(list(self.tally.pending))
            self.tally.pending.clear()
            log.info("%s (bulk): %d/%d rows done", self.entity, self.tally.done, self.tally.planned)
        if self.tally.pending:
            self.checkpoint(list(self.tally.pending))
            self.tally.pending.clear()

    def entry(self, item: PlannedCreate, *, uuid: str | None) -> StateEntry:
        return _entry(
            self.entity,
            self.data_source_uuid,
            item.payload.external_id,
            self.run_id,
            uuid=uuid,
            digest=item.content_hash,
            payload=item.payload.fields(),
            version=item.source_updated_at,
        )

    def outcome(self) -> BulkOutcome:
        return BulkOutcome(_result(self.tally, self.aborted), tuple(self.leftover))


def bulk_create_customers(
    client: Any,
    creates: Sequence[PlannedCreate],
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
) -> BulkOutcome:
    """Create customers through JSON imports, chunk by chunk, then read their uuids back.

    A server without the bulk endpoint hands every remaining create back as `leftover`.
    """
    bulk = _BulkRun(
        client, Entity.LEAD, data_source_uuid, run_id, checkpoint, _Tally(Entity.LEAD, len(creates))
    )

    def build_payload(chunk: Sequence[PlannedCreate]) -> dict[str, Any]:
        customers = []
        for item in chunk:
            body = item.payload.to_api(data_source_uuid)
            body.pop("data_source_uuid", None)  # in the path
            customers.append(body)
        return {"customers": customers}

    def problem_of(item: PlannedCreate, details: Mapping[str, Any]) -> str | None:
        external_id = item.payload.external_id
        return _part_failure((details.get(external_id) or {}).get("customers"), external_id)

    bulk.run(_chunks(list(creates), BULK_CUSTOMERS_PER_IMPORT), build_payload, problem_of)
    if bulk.imported:
        # JSON imports do not answer with uuids: one listing of the data source (200 per page) does.
        wanted = {item.payload.external_id: item for item in bulk.imported}
        checkpoint(
            [
                bulk.entry(wanted[customer["external_id"]], uuid=customer["uuid"])
                for customer in client.iter_customers(data_source_uuid=data_source_uuid)
                if customer.get("external_id") in wanted
            ]
        )
    return bulk.outcome()


def bulk_import_trial_invoices(
    client: Any,
    creates: Sequence[PlannedCreate],
    *,
    data_source_uuid: str,
    run_id: str,
    synced_leads: set[str],
    synced_plans: set[str],
    checkpoint: Checkpoint,
) -> BulkOutcome:
    """Import new trial invoices through JSON imports, all of a customer's in the same import.

    Trials whose customer or plan is not synced fail (retried next run); a server without the bulk
    endpoint hands the remaining creates back as `leftover`.
    """
    bulk = _BulkRun(
        client, Entity.TRIAL, data_source_uuid, run_id, checkpoint, _Tally(Entity.TRIAL, len(creates))
    )
    by_customer: dict[str, list[PlannedCreate]] = defaultdict(list)
    for item in creates:
        invoice: TrialInvoice = item.payload
        if invoice.customer_external_id not in synced_leads:
            bulk.fail(
                item, LookupError(f"customer {invoice.customer_external_id} is not synced to ChartMogul yet")
            )
        elif invoice.plan_external_id not in synced_plans:
            bulk.fail(item, LookupError(f"plan {invoice.plan_external_id} is not synced to ChartMogul yet"))
        else:
            by_customer[invoice.customer_external_id].append(item)

    chunks: list[list[PlannedCreate]] = [[]]
    for group in by_customer.values():
        if chunks[-1] and len(chunks[-1]) + len(group) > BULK_INVOICES_PER_IMPORT:
            chunks.append([])
        chunks[-1].extend(group)

    def build_payload(chunk: Sequence[PlannedCreate]) -> dict[str, Any]:
        invoices, line_items = [], []
        for item in chunk:
            body = item.payload.to_api(plan_uuid="", data_source_uuid=data_source_uuid)
            body.pop("data_source_uuid", None)
            for line in body.pop("line_items"):
                line.pop("plan_uuid", None)  # bulk line items name their plan by external id
                line_items.append(
                    {
                        **line,
                        "invoice_external_id": item.payload.external_id,
                        "plan_external_id": item.payload.plan_external_id,
                    }
                )
            invoices.append(body)
        return {"invoices": invoices, "line_items": line_items}

    def problem_of(item: PlannedCreate, details: Mapping[str, Any]) -> str | None:
        invoice = item.payload
        parts = details.get(invoice.customer_external_id) or {}
        problem = _part_failure(parts.get("invoices"), invoice.external_id) or (
            _part_failure(parts["line_items"], invoice.external_id) if "line_items" in parts else None
        )
        if problem is not None and "already exists" in problem:
            return None  # an earlier attempt of ours imported it: done, not doubled
        return problem

    bulk.run((c for c in chunks if c), build_payload, problem_of)
    return bulk.outcome()


# ---- first contact -----------------------------------------------------------------------------

# The synced fields, as `CustomerPayload.fields()` names them (its external id is the key, not a field).
_CUSTOMER_FIELDS = tuple(f.name for f in dataclasses.fields(CustomerPayload) if f.name != "external_id")
_TIMESTAMP_FIELDS = {"lead_created_at", "free_trial_started_at"}


def _api_time(value: Any) -> str | None:
    """An API timestamp ("2025-01-02T09:00:00.000Z") in the form mogulflow sends and hashes."""
    from mogulflow.transform import format_api_time

    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return format_api_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def customer_fields_from_api(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The synced fields of a customer as the API returns it, in `CustomerPayload.fields()` form."""
    fields: dict[str, Any] = {}
    for name in _CUSTOMER_FIELDS:
        value = customer.get(name)
        fields[name] = _api_time(value) if name in _TIMESTAMP_FIELDS else (None if value == "" else value)
    return fields


def read_customer_state(client: Any, *, data_source_uuid: str, run_id: str) -> dict[str, StateEntry]:
    """Rebuild the customers' sync state from the API by listing the data source (200 per page).

    Used when the state is empty but the data source may already hold customers (a re-install, a
    lost state table): what is there already is compared, not created again or looked up one by one.
    """
    from mogulflow.transform import content_hash

    entries: dict[str, StateEntry] = {}
    try:
        customers = list(client.iter_customers(data_source_uuid=data_source_uuid))
    except LOAD_STOPPERS:
        raise
    except ChartMogulError as error:
        # Without the listing, creates still cannot double: an existing customer is adopted.
        log.warning("Could not list the data source's customers (%s); creating with look-ups instead.", error)
        return entries
    for customer in customers:
        external_id = customer.get("external_id")
        sources = {customer.get("data_source_uuid"), *(customer.get("data_source_uuids") or ())} - {None}
        if not external_id or (sources and data_source_uuid not in sources):
            continue
        fields = customer_fields_from_api(customer)
        entries[external_id] = _entry(
            Entity.LEAD,
            data_source_uuid,
            external_id,
            run_id,
            uuid=customer["uuid"],
            digest=content_hash(fields),
            payload=fields,
        )
    return entries
