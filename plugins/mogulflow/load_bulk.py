"""Load, in bulk: create many new customers or trial invoices through ChartMogul's JSON imports.

Above `bulk_threshold()` new objects, creates go through JSON imports (one request per few hundred
customers instead of one per customer); updates and small loads stay per object (`mogulflow.load`).
Each import is checkpointed once ChartMogul confirms it; per-record failures in its
`status_details` become failed rows (retried by the next run). A server without the endpoint hands
every remaining create back as `leftover`, for the per-object path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mogulflow.api.client import ChartMogulClient
from mogulflow.api.errors import BulkImportUnsupportedError
from mogulflow.load import Checkpoint, RowOutcome, RowTarget, Tally, WriteResult, not_attempted
from mogulflow.model import Entity
from mogulflow.plan import PlannedCreate, SyncPlan
from mogulflow.reports import LoadReport
from mogulflow.state import LOAD_STOPPERS, StateEntry
from mogulflow.transform import TrialInvoice

log = logging.getLogger(__name__)

BULK_THRESHOLD_ENV = "MOGULFLOW_BULK_THRESHOLD"
# Below this many new objects the per-object path is as fast and tells more per row.
DEFAULT_BULK_THRESHOLD = 500
# The guide's advice: 100-1,000 customers per import; invoices of one customer stay together.
BULK_CUSTOMERS_PER_IMPORT = 500
BULK_INVOICES_PER_IMPORT = 1000
BULK_POLL_SECONDS = 2.0
BULK_TIMEOUT_SECONDS = 1800.0


def bulk_threshold() -> int:
    """New objects from which a load uses JSON imports (`$MOGULFLOW_BULK_THRESHOLD`; 0 = never)."""
    value = os.environ.get(BULK_THRESHOLD_ENV, "").strip()
    return int(value) if value else DEFAULT_BULK_THRESHOLD


def uses_bulk(plan: SyncPlan, threshold: int | None = None) -> bool:
    """Whether the plan's creates are many enough for the bulk path."""
    limit = bulk_threshold() if threshold is None else threshold
    return limit > 0 and len(plan.creates) >= limit


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


def _chunks(items: Sequence[PlannedCreate], size: int) -> Iterable[Sequence[PlannedCreate]]:
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

    client: ChartMogulClient
    target: RowTarget
    checkpoint: Checkpoint
    tally: Tally
    imported: list[PlannedCreate] = field(default_factory=list)
    leftover: list[PlannedCreate] = field(default_factory=list)
    aborted: str | None = None

    def fail(self, item: PlannedCreate, error: Exception) -> None:
        self.tally.add(self.target.failed(item.payload.external_id, error))

    def run(
        self,
        chunks: Iterable[Sequence[PlannedCreate]],
        build_payload: Callable[[Sequence[PlannedCreate]], dict[str, Any]],
        problem_of: Callable[[PlannedCreate, Mapping[str, Any]], str | None],
    ) -> None:
        """Import chunk after chunk; after a missing endpoint the rest is `leftover`, after a
        load-stopping error the rest fails unattempted."""
        for chunk in chunks:
            if self.aborted is not None:
                for item in chunk:
                    self.fail(item, not_attempted(self.aborted))
                continue
            if self.leftover:
                self.leftover.extend(chunk)  # the endpoint is missing: the per-object path takes the rest
                continue
            ids = [item.payload.external_id for item in chunk]
            payload = {
                "external_id": import_external_id(self.target.run_id, self.target.entity, ids),
                **build_payload(chunk),
            }
            try:
                answer = self.client.run_json_import(
                    self.target.data_source_uuid,
                    payload,
                    poll_interval=BULK_POLL_SECONDS,
                    timeout=BULK_TIMEOUT_SECONDS,
                )
            except BulkImportUnsupportedError:
                log.info(
                    "The API has no JSON import endpoint: %s rows go one by one instead.", self.target.entity
                )
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
                self.tally.add(self.confirmed(item, uuid=None))
            self.tally.flush(self.checkpoint)
            log.info("%s (bulk): %d/%d rows done", self.target.entity, self.tally.done, self.tally.planned)
        self.tally.flush(self.checkpoint)

    def confirmed(self, item: PlannedCreate, *, uuid: str | None) -> WriteResult:
        return self.target.confirmed(
            RowOutcome.CREATED,
            item.payload,
            uuid=uuid,
            digest=item.content_hash,
            version=item.source_updated_at,
        )

    def outcome(self) -> BulkOutcome:
        return BulkOutcome(self.tally.report(self.aborted), tuple(self.leftover))


def bulk_create_customers(
    client: ChartMogulClient,
    creates: Sequence[PlannedCreate],
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
) -> BulkOutcome:
    """Create customers through JSON imports, chunk by chunk, then read their uuids back."""
    target = RowTarget(Entity.LEAD, data_source_uuid, run_id)
    bulk = _BulkRun(client, target, checkpoint, Tally(Entity.LEAD, len(creates)))

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
        entries: list[StateEntry] = [
            bulk.confirmed(wanted[customer["external_id"]], uuid=customer["uuid"]).entry
            for customer in client.iter_customers(data_source_uuid=data_source_uuid)
            if customer.get("external_id") in wanted
        ]
        checkpoint(entries)
    return bulk.outcome()


def bulk_import_trial_invoices(
    client: ChartMogulClient,
    creates: Sequence[PlannedCreate],
    *,
    data_source_uuid: str,
    run_id: str,
    synced_leads: set[str],
    synced_plans: set[str],
    checkpoint: Checkpoint,
) -> BulkOutcome:
    """Import new trial invoices through JSON imports, all of a customer's in the same import.

    Trials whose customer or plan is not synced fail (retried next run).
    """
    target = RowTarget(Entity.TRIAL, data_source_uuid, run_id)
    bulk = _BulkRun(client, target, checkpoint, Tally(Entity.TRIAL, len(creates)))
    by_customer: dict[str, list[PlannedCreate]] = defaultdict(list)
    for item in creates:
        invoice = item.payload
        assert isinstance(invoice, TrialInvoice)
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
        return {"invoices": invoices, "line_items": line_items}

    def problem_of(item: PlannedCreate, details: Mapping[str, Any]) -> str | None:
        invoice = item.payload
        assert isinstance(invoice, TrialInvoice)
        parts = details.get(invoice.customer_external_id) or {}
        problem = _part_failure(parts.get("invoices"), invoice.external_id) or (
            _part_failure(parts["line_items"], invoice.external_id) if "line_items" in parts else None
        )
        if problem is not None and "already exists" in problem:
            return None  # an earlier attempt of ours imported it: done, not doubled
        return problem

    bulk.run((c for c in chunks if c), build_payload, problem_of)
    return bulk.outcome()
