"""Load: carry out a `SyncPlan` through a ChartMogul client, checkpointing as writes are confirmed.

Row-level problems (a 422 for one customer, a write that outlived its retries) are data: they end
as `failed` rows in the result and in the sync state, and the next run retries them. Only a
batch-level failure (the client's circuit breaker opening) stops a load early, and even then every
confirmed write has been checkpointed and every remaining row is counted as failed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mogulflow.api.errors import ChartMogulError, CircuitOpenError
from mogulflow.model import Entity, RowError
from mogulflow.plan import PlannedCreate, PlannedUpdate, SyncPlan
from mogulflow.record import STATUS_FAILED, STATUS_SYNCED, StateEntry
from mogulflow.transform import TrialInvoice

log = logging.getLogger(__name__)

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

    @property
    def total(self) -> int:
        """Rows accounted for."""
        return self.created + self.updated + self.unchanged + self.failed


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
) -> StateEntry:
    return StateEntry(entity, data_source_uuid, external_id, uuid, digest, payload, status, _now(), run_id)


def _failure(
    entity: Entity, data_source_uuid: str, run_id: str, external_id: str, uuid: str | None, error: Exception
) -> WriteResult:
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
                payload=None,
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
                except CircuitOpenError as error:
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
                ),
            ),
        )

    def patch(item: PlannedUpdate) -> WriteResult:
        update(item.chartmogul_uuid, dict(item.changed_fields))
        return WriteResult(
            UPDATED,
            (
                _entry(
                    entity,
                    data_source_uuid,
                    item.payload.external_id,
                    run_id,
                    uuid=item.chartmogul_uuid,
                    digest=item.content_hash,
                    payload=item.payload.fields(),
                ),
            ),
        )

    def guarded(
        call: Callable[[], WriteResult], external_id: str, uuid: str | None
    ) -> Callable[[], WriteResult]:
        def run() -> WriteResult:
            try:
                return call()
            except CircuitOpenError:
                raise
            except Exception as error:
                return _failure(entity, data_source_uuid, run_id, external_id, uuid, error)

        return run

    writes: list[tuple[Sequence[str], Callable[[], WriteResult]]] = []
    for item in plan.creates:
        writes.append(
            ([item.payload.external_id], guarded(lambda i=item: create(i), item.payload.external_id, None))
        )
    for item in plan.updates:
        writes.append(
            (
                [item.payload.external_id],
                guarded(lambda i=item: patch(i), item.payload.external_id, item.chartmogul_uuid),
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


def load_customers(
    client: Any,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadResult:
    """Create new customers (idempotently) and PATCH changed ones; checkpoint confirmed writes."""
    return _load_objects(
        client,
        plan,
        data_source_uuid=data_source_uuid,
        run_id=run_id,
        checkpoint=checkpoint,
        max_workers=max_workers,
        checkpoint_rows=checkpoint_rows,
        upsert=client.upsert_customer,
        update=client.update_customer,
    )


def load_plans(
    client: Any,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadResult:
    """Create new plans (idempotently) and PATCH changed ones; checkpoint confirmed writes."""
    return _load_objects(
        client,
        plan,
        data_source_uuid=data_source_uuid,
        run_id=run_id,
        checkpoint=checkpoint,
        max_workers=max_workers,
        checkpoint_rows=checkpoint_rows,
        upsert=client.upsert_plan,
        update=client.update_plan,
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
        sendable = [g for g in group if g[2] is None or g[0].external_id in replaced]
        if not sendable:
            return results
        bodies = [
            inv.to_api(plan_uuid=plan_uuid_by_plan[inv.plan_external_id], data_source_uuid=data_source_uuid)
            for inv, _, _ in sendable
        ]
        try:
            answer = client.import_invoices(customer_uuid, bodies)
        except CircuitOpenError:
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
