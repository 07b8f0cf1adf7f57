"""Load: carry out a `SyncPlan` through the ChartMogul client, one object (or one customer) at a time.

Row-level problems (a 422 for one customer, a write that outlived its retries) are data: they end
as `failed` rows in the report and in the sync state, and the next run retries them. Only a
batch-level failure (the client's circuit breaker opening, a rejected API key) stops a load
early, and even then every confirmed write has been handed to the checkpoint and every remaining
row is counted as failed. The loader never reads the sync state: the plan carries what it needs,
and confirmed writes leave through `checkpoint` (which `mogulflow.state` provides).
"""

from __future__ import annotations

import enum
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mogulflow.api.client import ChartMogulClient, WriteOutcome
from mogulflow.api.errors import ChartMogulError
from mogulflow.model import Entity, RowError
from mogulflow.plan import Payload, PlannedCreate, PlannedUpdate, SyncPlan
from mogulflow.progress import ProgressReporter
from mogulflow.reports import ERRORS_KEPT, LoadReport
from mogulflow.state import LOAD_STOPPERS, StateEntry, SyncStatus
from mogulflow.transform import TrialInvoice

log = logging.getLogger(__name__)

# Confirmed writes are saved every this many rows: a killed task loses at most that much progress.
DEFAULT_CHECKPOINT_ROWS = 200

Checkpoint = Callable[[Sequence[StateEntry]], None]


class RowOutcome(enum.StrEnum):
    """How one planned row ended."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class WriteResult:
    """How one planned write ended, with the state entry that records it."""

    outcome: RowOutcome
    entry: StateEntry
    error: RowError | None = None


@dataclass(frozen=True)
class RowTarget:
    """Where a load writes: which entity, in which data source, for which run."""

    entity: Entity
    data_source_uuid: str
    run_id: str

    def confirmed(
        self,
        outcome: RowOutcome,
        payload: Payload,
        *,
        uuid: str | None,
        digest: str | None,
        version: datetime | None,
        status: SyncStatus = SyncStatus.SYNCED,
    ) -> WriteResult:
        """A write ChartMogul confirmed: the entry remembers what was sent and its hash."""
        entry = StateEntry(
            entity=self.entity,
            data_source_uuid=self.data_source_uuid,
            external_id=payload.external_id,
            status=status,
            synced_at=datetime.now(UTC),
            run_id=self.run_id,
            chartmogul_uuid=uuid,
            content_hash=digest,
            payload=payload.fields(),
            source_updated_at=version,
        )
        return WriteResult(outcome, entry)

    def failed(
        self,
        external_id: str,
        error: Exception,
        *,
        uuid: str | None = None,
        intended: Payload | None = None,
    ) -> WriteResult:
        """A failed row: state `failed` (re-read and re-sent by the next run), keeping what was meant."""
        status = getattr(error, "status", None)
        retriable = not (isinstance(error, ChartMogulError) and status is not None and 400 <= status < 500)
        problem = RowError(self.entity, external_id, str(error) or type(error).__name__, status, retriable)
        return self.refused(problem, uuid=uuid, intended=intended)

    def refused(
        self, problem: RowError, *, uuid: str | None = None, intended: Payload | None = None
    ) -> WriteResult:
        """A row the API refused or that failed, as described by `problem`."""
        entry = StateEntry(
            entity=self.entity,
            data_source_uuid=self.data_source_uuid,
            external_id=problem.external_id,
            status=SyncStatus.FAILED,
            synced_at=datetime.now(UTC),
            run_id=self.run_id,
            chartmogul_uuid=uuid,
            payload=None if intended is None else intended.fields(),
        )
        return WriteResult(RowOutcome.FAILED, entry, problem)


@dataclass
class Tally:
    """Running counts of one entity's load, and the confirmed entries not yet checkpointed."""

    entity: Entity
    planned: int
    counts: Counter[RowOutcome] = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    pending: list[StateEntry] = field(default_factory=list)

    def add(self, result: WriteResult) -> None:
        """Count one row's outcome and queue its entry for the next checkpoint."""
        self.counts[result.outcome] += 1
        self.pending.append(result.entry)
        if result.error is not None:
            self.errors.append(result.error)

    @property
    def done(self) -> int:
        """Rows with an outcome so far."""
        return sum(self.counts.values())

    def describe(self) -> str:
        """The outcomes so far, for a progress line: `created 120, failed 2`."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))

    def flush(self, checkpoint: Checkpoint) -> None:
        """Hand every pending entry to the checkpoint."""
        if self.pending:
            checkpoint(list(self.pending))
            self.pending.clear()

    def report(self, aborted: str | None) -> LoadReport:
        """The tally as the load's report."""
        return LoadReport(
            self.entity,
            created=self.counts[RowOutcome.CREATED],
            updated=self.counts[RowOutcome.UPDATED],
            unchanged=self.counts[RowOutcome.UNCHANGED],
            failed=self.counts[RowOutcome.FAILED],
            errors=tuple(self.errors[:ERRORS_KEPT]),
            aborted=aborted,
        )


def not_attempted(aborted: str) -> RuntimeError:
    """The error a row gets when the load stopped before reaching it."""
    return RuntimeError(f"not attempted, the load stopped early: {aborted}")


# One unit of work for the pool: the external ids it covers, and the call that writes them.
Write = tuple[Sequence[str], Callable[[], list[WriteResult]]]


def _run_writes(
    tally: Tally,
    target: RowTarget,
    writes: Sequence[Write],
    *,
    checkpoint: Checkpoint,
    max_workers: int,
    checkpoint_rows: int,
) -> str | None:
    """Run writes on a thread pool, checkpoint confirmed ones, stop early if the API keeps refusing.

    Returns the abort reason, if any.
    """
    aborted: str | None = None
    queue = list(reversed(writes))
    in_flight: dict[Future[list[WriteResult]], Sequence[str]] = {}
    progress = ProgressReporter(str(tally.entity), tally.planned, log, baseline=tally.done)

    def flush(force: bool = False) -> None:
        if force or len(tally.pending) >= checkpoint_rows:
            tally.flush(checkpoint)
        (progress.finish if force else progress.update)(tally.done, tally.describe())

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
                    results = future.result()
                except LOAD_STOPPERS as error:
                    aborted = aborted or str(error)
                    results = [target.failed(external_id, error) for external_id in ids]
                except Exception as error:  # a row-level failure the client did not classify
                    results = [target.failed(external_id, error) for external_id in ids]
                for result in results:
                    tally.add(result)
            flush()
            if aborted is not None and queue:
                # The API keeps refusing: do not march through the rest, count it as failed now.
                while queue:
                    ids, _ = queue.pop()
                    for external_id in ids:
                        tally.add(target.failed(external_id, not_attempted(aborted)))
    flush(force=True)
    return aborted


def _object_writes(
    client: ChartMogulClient, entity: Entity
) -> tuple[Callable[[dict[str, Any]], WriteOutcome], Callable[[str, dict[str, Any]], object]]:
    """The client's create-or-adopt and PATCH calls for customers or plans."""
    if entity is Entity.PLAN:
        return client.upsert_plan, client.update_plan
    return client.upsert_customer, client.update_customer


def load_objects(
    client: ChartMogulClient,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadReport:
    """Create new customers or plans (idempotently), PATCH changed ones, checkpoint confirmed writes."""
    target = RowTarget(plan.entity, data_source_uuid, run_id)
    upsert, update = _object_writes(client, plan.entity)
    tally = Tally(plan.entity, plan.size)
    tally.counts[RowOutcome.UNCHANGED] += len(plan.unchanged)
    tally.counts[RowOutcome.CREATED] += len(plan.written_this_run)

    def create(item: PlannedCreate) -> WriteResult:
        answer = upsert(item.payload.to_api(data_source_uuid))
        outcome = (
            RowOutcome.CREATED
            if answer.created
            else (RowOutcome.UPDATED if answer.updated else RowOutcome.UNCHANGED)
        )
        return target.confirmed(
            outcome, item.payload, uuid=answer.uuid, digest=item.content_hash, version=item.source_updated_at
        )

    def patch(item: PlannedUpdate) -> WriteResult:
        uuid = item.chartmogul_uuid
        if uuid is None:
            # Written by a bulk import, which does not answer with uuids: upsert finds it by external id.
            uuid = upsert(item.payload.to_api(data_source_uuid)).uuid
        else:
            update(uuid, dict(item.changed_fields))
        return target.confirmed(
            RowOutcome.UPDATED,
            item.payload,
            uuid=uuid,
            digest=item.content_hash,
            version=item.source_updated_at,
            status=item.status,
        )

    def guarded(call: Callable[[], WriteResult], payload: Payload, uuid: str | None) -> Write:
        def run() -> list[WriteResult]:
            try:
                return [call()]
            except LOAD_STOPPERS:
                raise
            except Exception as error:
                return [target.failed(payload.external_id, error, uuid=uuid, intended=payload)]

        return [payload.external_id], run

    writes = [guarded(lambda i=item: create(i), item.payload, None) for item in plan.creates]
    writes += [guarded(lambda i=item: patch(i), item.payload, item.chartmogul_uuid) for item in plan.updates]
    aborted = _run_writes(
        tally, target, writes, checkpoint=checkpoint, max_workers=max_workers, checkpoint_rows=checkpoint_rows
    )
    return tally.report(aborted)


@dataclass(frozen=True)
class _InvoiceWrite:
    """One trial invoice to import: its payload, its hash and version, and the invoice it replaces."""

    invoice: TrialInvoice
    digest: str
    version: datetime | None
    replaces: str | None  # the uuid of the invoice a changed trial replaces, when known
    changed: bool  # an update: the old invoice must go before the new one is imported


def load_trial_invoices(
    client: ChartMogulClient,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    customer_uuid_by_lead: Mapping[str, str],
    plan_uuid_by_plan: Mapping[str, str],
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadReport:
    """Import one trial invoice per trial, all of a customer's in one request.

    A changed trial's invoice is deleted and imported again (ChartMogul has no in-place edit of a
    trial line item that keeps its external id). Trials whose customer or plan did not sync in
    this or an earlier run fail, and are retried by the next run.
    """
    target = RowTarget(plan.entity, data_source_uuid, run_id)
    tally = Tally(plan.entity, plan.size)
    tally.counts[RowOutcome.UNCHANGED] += len(plan.unchanged)
    tally.counts[RowOutcome.CREATED] += len(plan.written_this_run)
    items = [_InvoiceWrite(c.payload, c.content_hash, c.source_updated_at, None, False) for c in plan.creates]
    items += [
        _InvoiceWrite(u.payload, u.content_hash, u.source_updated_at, u.chartmogul_uuid, True)
        for u in plan.updates
    ]
    by_customer: dict[str, list[_InvoiceWrite]] = defaultdict(list)
    for item in items:
        invoice = item.invoice
        customer_uuid = customer_uuid_by_lead.get(invoice.customer_external_id)
        if customer_uuid is None or invoice.plan_external_id not in plan_uuid_by_plan:
            missing = (
                "customer " + invoice.customer_external_id
                if customer_uuid is None
                else "plan " + invoice.plan_external_id
            )
            tally.add(
                target.failed(invoice.external_id, LookupError(f"{missing} is not synced to ChartMogul yet"))
            )
            continue
        by_customer[customer_uuid].append(item)

    def remove_replaced(item: _InvoiceWrite) -> WriteResult | None:
        """Delete the invoice a changed trial replaces; a failure, or None when the way is clear."""
        old_uuid = item.replaces
        if old_uuid is None:
            found = client.find_invoice(data_source_uuid, item.invoice.external_id)  # bulk-imported
            if found is None:
                return None  # gone from ChartMogul: import it again
            old_uuid = str(found["uuid"])
        try:
            client.delete_invoice(old_uuid)
        except Exception as error:
            if getattr(error, "status", None) != 404:
                return target.failed(item.invoice.external_id, error, uuid=old_uuid)
        return None

    def import_for(customer_uuid: str, group: list[_InvoiceWrite]) -> list[WriteResult]:
        results: list[WriteResult] = []
        sendable: list[_InvoiceWrite] = []
        for item in group:
            problem = remove_replaced(item) if item.changed else None
            if problem is None:
                sendable.append(item)
            else:
                results.append(problem)
        if not sendable:
            return results
        bodies = [
            item.invoice.to_api(
                plan_uuid=plan_uuid_by_plan[item.invoice.plan_external_id], data_source_uuid=data_source_uuid
            )
            for item in sendable
        ]
        try:
            answer = client.import_invoices(customer_uuid, bodies)
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            return results + [target.failed(item.invoice.external_id, error) for item in sendable]
        for item in sendable:
            external_id = item.invoice.external_id
            if external_id in answer.errors:
                refusal = RowError(plan.entity, external_id, answer.errors[external_id], 422, retriable=False)
                results.append(target.refused(refusal))
                continue
            uuid = answer.imported.get(external_id) or answer.already_present.get(external_id)
            outcome = (
                RowOutcome.UPDATED
                if item.changed
                else (RowOutcome.CREATED if external_id in answer.imported else RowOutcome.UNCHANGED)
            )
            results.append(
                target.confirmed(outcome, item.invoice, uuid=uuid, digest=item.digest, version=item.version)
            )
        return results

    writes: list[Write] = [
        ([item.invoice.external_id for item in group], lambda c=customer_uuid, g=group: import_for(c, g))
        for customer_uuid, group in by_customer.items()
    ]
    aborted = _run_writes(
        tally, target, writes, checkpoint=checkpoint, max_workers=max_workers, checkpoint_rows=checkpoint_rows
    )
    return tally.report(aborted)
