"""Load, in bulk: create many new customers (with their trial invoices) through ChartMogul's JSON imports.

Above `bulk_threshold()` new objects, creates go through JSON imports; updates and small loads stay
per object (`mogulflow.load.objects`). One import carries every record of the customers it names: the
customer, its new trial invoices and their line items (../shared/chartmogul-api.md §4.6: "put all
records of one customer in the same request"). Imports are sized by customers and by bytes, and
several are in flight at once, their polling overlapped. Each import is checkpointed once
ChartMogul confirms it; per-record failures in its `status_details` become failed rows (retried by
the next run). "Already exists" is not success: such a record goes to the per-object path, which
compares what ChartMogul holds with what was meant (`mogulflow.load.trial_invoices`). A server
without the endpoint hands every remaining create back as `leftover`, for the per-object path. JSON
imports answer without uuids: one listing of the data source reads them back at the end
(`mogulflow.load.read_back`), so a later change needs no look-up, and a record the import reported
but the listing does not show is counted failed, not created.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.errors import BulkImportUnsupportedError, is_already_exists_message
from mogulflow.load.progress import ProgressReporter
from mogulflow.load.read_back import read_back_each
from mogulflow.load.writes import (
    LOAD_STOPPERS,
    Checkpoint,
    RowOutcome,
    RowTarget,
    Tally,
    WriteResult,
    not_attempted,
)
from mogulflow.plan.sync_plan import PlannedCreate
from mogulflow.transform.payloads import TrialInvoice
from mogulflow.values.entities import Entity
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse.sync_state import StateEntry

log = logging.getLogger(__name__)

BULK_THRESHOLD_ENV = "MOGULFLOW_BULK_THRESHOLD"
# Below this many new objects the per-object path is as fast and tells more per row.
DEFAULT_BULK_THRESHOLD = 500
# The guide's advice: 100-1,000 customers per import; 500 leaves room for several in flight.
BULK_CUSTOMERS_PER_IMPORT = 500
# The first import goes alone and small (the guide's lower end): a server without the endpoint, or a
# payload it refuses, costs one small import instead of several big ones in flight.
BULK_FIRST_IMPORT_CUSTOMERS = 100
# The documented limit is 5 MB of JSON; the margin covers the envelope around the records.
BULK_MAX_IMPORT_BYTES = 4_500_000
# Imports in flight at once: each holds a connection only while it is sent or polled, so a few keep
# ChartMogul's import workers busy while using a fraction of the account's 20 connections.
BULK_IMPORTS_IN_FLIGHT = 6
# Seconds between status polls: an import takes about a second or more, and each poll is a request.
BULK_POLL_SECONDS = 1.0
BULK_TIMEOUT_SECONDS = 1800.0


def bulk_threshold() -> int:
    """New objects from which a load uses JSON imports (`$MOGULFLOW_BULK_THRESHOLD`; 0 = never)."""
    value = os.environ.get(BULK_THRESHOLD_ENV, "").strip()
    return int(value) if value else DEFAULT_BULK_THRESHOLD


def uses_bulk(creates: int, threshold: int | None = None) -> bool:
    """Whether this many creates are enough for the bulk path."""
    limit = bulk_threshold() if threshold is None else threshold
    return limit > 0 and creates >= limit


def import_external_id(run_id: str, entity: Entity, external_ids: Iterable[str]) -> str:
    """A deterministic id for one JSON import: a retried task re-submitting the same chunk gets
    'already taken' and follows the first submission instead of importing twice."""
    digest = hashlib.sha256("\n".join([run_id, str(entity), *external_ids]).encode()).hexdigest()
    return f"mogulflow-{entity}-{digest[:24]}"


@dataclass(frozen=True)
class BulkOutcome:
    """What the bulk path did, and the creates it handed back for the per-object path."""

    report: LoadReport
    leftover: tuple[PlannedCreate, ...]


@dataclass(frozen=True)
class CustomerRecords:
    """All records of one customer that travel in the same import."""

    customer_external_id: str
    customer: PlannedCreate | None  # None: the customer exists already, only its invoices are new
    invoices: tuple[PlannedCreate, ...] = ()


@dataclass(frozen=True)
class ImportBatch:
    """One JSON import: the customers it covers and its request body."""

    groups: tuple[CustomerRecords, ...]
    body: Mapping[str, Any]


def _records(group: CustomerRecords, data_source_uuid: str) -> dict[str, list[dict[str, Any]]]:
    """The customer's records as the import's flat arrays (the data source is in the path)."""
    customers, invoices, line_items = [], [], []
    if group.customer is not None:
        body = group.customer.payload.to_api(data_source_uuid)
        body.pop("data_source_uuid", None)
        customers.append(body)
    for item in group.invoices:
        invoice = item.payload
        assert isinstance(invoice, TrialInvoice)
        body = invoice.to_api(plan_uuid="", data_source_uuid=data_source_uuid)
        body.pop("data_source_uuid", None)
        for line in body.pop("line_items"):
            line.pop("plan_uuid", None)  # bulk line items name their plan by external id
            line_items.append(
                {
                    **line,
                    "invoice_external_id": invoice.external_id,
                    "plan_external_id": invoice.plan_external_id,
                }
            )
        invoices.append(body)
    return {"customers": customers, "invoices": invoices, "line_items": line_items}


def import_batches(
    groups: Iterable[CustomerRecords],
    *,
    data_source_uuid: str,
    run_id: str,
    entity: Entity,
    customers_per_import: int | None = None,
    first_customers: int | None = None,
    max_bytes: int | None = None,
) -> Iterator[ImportBatch]:
    """Customers' records cut into imports of at most `customers_per_import` customers (the first
    one `first_customers`) and `max_bytes` of JSON; one customer is never split. Lazy: only the
    imports in flight are built."""
    # Read at call time (not bound as defaults), so a test or an operator can change the constants.
    customers_per_import = customers_per_import or BULK_CUSTOMERS_PER_IMPORT
    max_bytes = max_bytes or BULK_MAX_IMPORT_BYTES
    limit = min(first_customers or BULK_FIRST_IMPORT_CUSTOMERS, customers_per_import)
    groups_now: list[CustomerRecords] = []
    arrays: dict[str, list[dict[str, Any]]] = {"customers": [], "invoices": [], "line_items": []}
    size = 0

    def batch() -> ImportBatch:
        ids = [
            i
            for g in groups_now
            for i in (g.customer_external_id, *(x.payload.external_id for x in g.invoices))
        ]
        body = {
            "external_id": import_external_id(run_id, entity, ids),
            **{k: v for k, v in arrays.items() if v},
        }
        return ImportBatch(tuple(groups_now), body)

    for group in groups:
        records = _records(group, data_source_uuid)
        group_bytes = len(json.dumps(records, separators=(",", ":"), default=str))
        if groups_now and (len(groups_now) >= limit or size + group_bytes > max_bytes):
            yield batch()
            groups_now, arrays, size = [], {name: [] for name in arrays}, 0
            limit = customers_per_import
        groups_now.append(group)
        for name, values in records.items():
            arrays[name].extend(values)
        size += group_bytes
    if groups_now:
        yield batch()


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


def _invoice_problem(parts: Mapping[str, Any], invoice_external_id: str) -> str | None:
    return _part_failure(parts.get("invoices"), invoice_external_id) or (
        _part_failure(parts["line_items"], invoice_external_id) if "line_items" in parts else None
    )


def run_imports(
    client: ChartMogulClient,
    data_source_uuid: str,
    batches: Iterator[ImportBatch],
    *,
    on_done: Callable[[ImportBatch, Mapping[str, Any]], None],
    on_failed: Callable[[ImportBatch, Exception], None],
    in_flight: int = BULK_IMPORTS_IN_FLIGHT,
) -> tuple[str | None, list[ImportBatch]]:
    """Keep up to `in_flight` imports submitted and polled at once (the first one alone, until it
    ends); hand each finished one to `on_done` (or `on_failed`) in this thread. Returns the abort
    reason and the batches the server had no endpoint for (then nothing more is sent)."""
    first_done = False
    aborted: str | None = None
    leftover: list[ImportBatch] = []
    running: dict[Future[dict[str, Any]], ImportBatch] = {}
    with ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="json-import") as pool:
        for batch in batches:
            while running and (len(running) >= in_flight or not first_done):
                aborted = _settle(running, leftover, on_done, on_failed, aborted)
                first_done = True
            if aborted is not None:
                on_failed(batch, not_attempted(aborted))
            elif leftover:
                leftover.append(batch)  # the endpoint is missing: the per-object path takes the rest
            else:
                future = pool.submit(
                    client.run_json_import,
                    data_source_uuid,
                    batch.body,
                    poll_interval=BULK_POLL_SECONDS,
                    timeout=BULK_TIMEOUT_SECONDS,
                )
                running[future] = batch
        while running:
            aborted = _settle(running, leftover, on_done, on_failed, aborted)
    return aborted, leftover


def _settle(
    running: dict[Future[dict[str, Any]], ImportBatch],
    leftover: list[ImportBatch],
    on_done: Callable[[ImportBatch, Mapping[str, Any]], None],
    on_failed: Callable[[ImportBatch, Exception], None],
    aborted: str | None,
) -> str | None:
    """Wait for at least one running import and hand it on; answers the (new) abort reason."""
    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
    for future in finished:
        batch = running.pop(future)
        try:
            answer = future.result()
        except BulkImportUnsupportedError:
            log.info("The API has no JSON import endpoint: these rows go one by one instead.")
            leftover.append(batch)
        except LOAD_STOPPERS as error:
            aborted = aborted or str(error)
            on_failed(batch, error)
        except Exception as error:  # the whole import failed: its rows fail, the next run retries them
            on_failed(batch, error)
        else:
            on_done(batch, answer)
    return aborted


@dataclass
class _BulkLoad:
    """The outcome of one bulk load: per-entity tallies, confirmed entries (for the uuid read-back)."""

    client: ChartMogulClient
    data_source_uuid: str
    run_id: str
    checkpoint: Checkpoint
    tallies: dict[Entity, Tally]
    # Combined with customers, an invoice that did not import is left to the trials step, not failed.
    invoices_ride_along: bool
    confirmed: dict[Entity, list[StateEntry]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    # Invoices ChartMogul said already exist: handed to the per-object path, which compares them.
    existing: list[PlannedCreate] = dataclasses.field(default_factory=list)
    progress: ProgressReporter = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        main = next(iter(self.tallies.values()))
        self.progress = ProgressReporter(f"{main.entity} (bulk)", main.planned, log, baseline=main.done)

    def target(self, entity: Entity) -> RowTarget:
        return RowTarget(entity, self.data_source_uuid, self.run_id)

    def add(self, entity: Entity, result: WriteResult) -> None:
        self.tallies[entity].add(result)
        if result.outcome is RowOutcome.CREATED:
            self.confirmed[entity].append(result.entry)

    def created(self, entity: Entity, item: PlannedCreate) -> WriteResult:
        return self.target(entity).confirmed(
            RowOutcome.CREATED,
            item.payload,
            uuid=None,
            digest=item.content_hash,
            version=item.source_updated_at,
        )

    def done(self, batch: ImportBatch, answer: Mapping[str, Any]) -> None:
        """Read each record's outcome from `status_details`; checkpoint the import in one transaction."""
        details = answer.get("status_details") or {}
        import_id = batch.body.get("external_id")
        for group in batch.groups:
            parts = details.get(group.customer_external_id) or {}
            if group.customer is not None:
                problem = _part_failure(parts.get("customers"), group.customer_external_id)
                if problem is not None:
                    error = RuntimeError(f"JSON import {import_id}: {problem}")
                    self.add(Entity.LEAD, self.target(Entity.LEAD).failed(group.customer_external_id, error))
                    continue  # its invoices were not imported either: the trials step says so
                self.add(Entity.LEAD, self.created(Entity.LEAD, group.customer))
            for item in group.invoices:
                problem = _invoice_problem(parts, item.payload.external_id)
                if problem is None:
                    self.add(Entity.TRIAL, self.created(Entity.TRIAL, item))
                elif is_already_exists_message(problem):
                    self.existing.append(item)  # riding along, the trials step plans it again anyway
                elif not self.invoices_ride_along:
                    error = RuntimeError(f"JSON import {import_id}: {problem}")
                    self.add(Entity.TRIAL, self.target(Entity.TRIAL).failed(item.payload.external_id, error))
        self.flush()

    def failed(self, batch: ImportBatch, error: Exception) -> None:
        """Every record of a failed import fails (invoices riding along are left to the trials step)."""
        for group in batch.groups:
            if group.customer is not None:
                self.add(Entity.LEAD, self.target(Entity.LEAD).failed(group.customer_external_id, error))
            elif not self.invoices_ride_along:
                for item in group.invoices:
                    self.add(Entity.TRIAL, self.target(Entity.TRIAL).failed(item.payload.external_id, error))
        self.flush()

    def flush(self) -> None:
        pending = [entry for tally in self.tallies.values() for entry in tally.pending]
        if pending:
            self.checkpoint(pending)
        for tally in self.tallies.values():
            tally.pending.clear()
        main = next(iter(self.tallies.values()))
        self.progress.update(main.done, main.describe())

    def read_back_uuids(self, missing: Sequence[StateEntry] = ()) -> None:
        """Record the uuids of what was imported (and of `missing`), one listing per entity; a record
        this run counted as created that the listing does not show becomes failed."""
        ours = [entry for entries in self.confirmed.values() for entry in entries]
        answer = read_back_each(self.client, self.data_source_uuid, [*ours, *missing])
        unlisted = [entry for entry in answer.absent if entry.run_id == self.run_id and entry in ours]
        failed = [
            self.target(entry.entity).failed(
                entry.external_id,
                RuntimeError("the JSON import reported it imported, but the data source does not list it"),
            )
            for entry in unlisted
        ]
        for entry, result in zip(unlisted, failed, strict=True):
            tally = self.tallies[entry.entity]
            tally.counts[RowOutcome.CREATED] -= 1
            tally.counts[RowOutcome.FAILED] += 1
            if result.error is not None:
                tally.errors.append(result.error)
        entries = answer.found + [result.entry for result in failed]
        if entries:
            self.checkpoint(entries)


def bulk_create_customers(
    client: ChartMogulClient,
    creates: Sequence[PlannedCreate],
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    invoices: Sequence[PlannedCreate] = (),
    missing_uuids: Sequence[StateEntry] = (),
    in_flight: int = BULK_IMPORTS_IN_FLIGHT,
) -> BulkOutcome:
    """Create customers through JSON imports, each with its new trial `invoices` in the same import.

    The report counts customers only; imported invoices are checkpointed (as written by this run)
    and the trials step counts them. An invoice that did not import is left to the trials step.
    """
    by_customer: dict[str, list[PlannedCreate]] = defaultdict(list)
    for item in invoices:
        invoice = item.payload
        assert isinstance(invoice, TrialInvoice)
        by_customer[invoice.customer_external_id].append(item)
    groups = (
        CustomerRecords(c.payload.external_id, c, tuple(by_customer.get(c.payload.external_id, ())))
        for c in creates
    )
    load = _BulkLoad(
        client,
        data_source_uuid,
        run_id,
        checkpoint,
        {Entity.LEAD: Tally(Entity.LEAD, len(creates)), Entity.TRIAL: Tally(Entity.TRIAL, len(invoices))},
        invoices_ride_along=True,
    )
    batches = import_batches(groups, data_source_uuid=data_source_uuid, run_id=run_id, entity=Entity.LEAD)
    aborted, leftover = run_imports(
        client, data_source_uuid, batches, on_done=load.done, on_failed=load.failed, in_flight=in_flight
    )
    load.progress.finish(load.tallies[Entity.LEAD].done, load.tallies[Entity.LEAD].describe())
    load.read_back_uuids(missing_uuids)
    rest = tuple(g.customer for batch in leftover for g in batch.groups if g.customer is not None)
    return BulkOutcome(load.tallies[Entity.LEAD].report(aborted), rest)


def bulk_import_trial_invoices(
    client: ChartMogulClient,
    creates: Sequence[PlannedCreate],
    *,
    data_source_uuid: str,
    run_id: str,
    synced_leads: Collection[str],
    synced_plans: Collection[str],
    checkpoint: Checkpoint,
    missing_uuids: Sequence[StateEntry] = (),
    in_flight: int = BULK_IMPORTS_IN_FLIGHT,
) -> BulkOutcome:
    """Import new trial invoices through JSON imports, all of a customer's in the same import.

    Trials whose customer or plan is not synced fail (retried next run).
    """
    tally = Tally(Entity.TRIAL, len(creates))
    load = _BulkLoad(
        client, data_source_uuid, run_id, checkpoint, {Entity.TRIAL: tally}, invoices_ride_along=False
    )
    target = load.target(Entity.TRIAL)
    by_customer: dict[str, list[PlannedCreate]] = defaultdict(list)
    for item in creates:
        invoice = item.payload
        assert isinstance(invoice, TrialInvoice)
        if invoice.customer_external_id not in synced_leads:
            missing = f"customer {invoice.customer_external_id}"
        elif invoice.plan_external_id not in synced_plans:
            missing = f"plan {invoice.plan_external_id}"
        else:
            by_customer[invoice.customer_external_id].append(item)
            continue
        tally.add(
            target.failed(invoice.external_id, LookupError(f"{missing} is not synced to ChartMogul yet"))
        )
    groups = (CustomerRecords(customer, None, tuple(items)) for customer, items in by_customer.items())
    batches = import_batches(groups, data_source_uuid=data_source_uuid, run_id=run_id, entity=Entity.TRIAL)
    aborted, leftover = run_imports(
        client, data_source_uuid, batches, on_done=load.done, on_failed=load.failed, in_flight=in_flight
    )
    load.flush()
    load.progress.finish(tally.done, tally.describe())
    load.read_back_uuids(missing_uuids)
    rest = tuple(item for batch in leftover for g in batch.groups for item in g.invoices)
    # "Already exists" is not success: the per-object path compares what is there with what was meant.
    return BulkOutcome(tally.report(aborted), rest + tuple(load.existing))
