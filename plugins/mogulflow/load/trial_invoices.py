"""Load trial invoices: one invoice per trial; a customer's new ones in one import request.

ChartMogul has no in-place edit of a trial line item that keeps its external id, so a changed trial's
invoice is replaced: the invoice held under its external id is deleted and the right one imported
straight after (the lead is without its trial for those two requests, never longer). What is
replaced is what ChartMogul holds now, never what the sync state remembers:

- a row in doubt (its last write failed, or a reconciliation marked it for re-sending, or it has no
  uuid) is confirmed first (`mogulflow.load.confirm`, in bulk where cheaper) and settled against the
  invoice found: the same → unchanged, no write; another → delete it and import ours (updated);
  none → import ours (created);
- any other changed trial deletes the invoice by its stored uuid: a uuid names one invoice for good,
  and an invoice's external id is unique in its data source, so a 204 proves the way is clear for
  the import (no lookup, two requests per changed trial); a 404 means it was replaced or deleted
  behind mogulflow's back, and the row is confirmed and settled as above.

"Already exists" from an import is not success either: the invoice found is compared with the one
meant and left (unchanged) or replaced (updated). An import whose customer uuid ChartMogul no longer
knows (404) is retried once with the uuid the lead's external id has now. Trials whose customer or
plan is not in ChartMogul fail, and are retried by the next run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient, InvoiceImportResult
from mogulflow.chartmogul.errors import NotFoundError
from mogulflow.chartmogul.shapes import invoice_differences
from mogulflow.load.confirm import HeldObjects, read_held
from mogulflow.load.writes import (
    DEFAULT_CHECKPOINT_ROWS,
    LOAD_STOPPERS,
    Checkpoint,
    RowOutcome,
    RowTarget,
    Tally,
    Write,
    WriteResult,
    run_writes,
)
from mogulflow.plan.sync_plan import SyncPlan
from mogulflow.transform.payloads import TrialInvoice
from mogulflow.values.run_summary import RowError
from mogulflow.values.step_reports import LoadReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _InvoiceWrite:
    """One trial invoice to write: its payload, its hash and version, and what it replaces."""

    invoice: TrialInvoice
    digest: str
    version: datetime | None
    replaces: str | None  # the stored uuid of the invoice a changed trial replaces, when known
    changed: bool  # an update: an invoice with its external id is (or was) in ChartMogul
    in_doubt: bool = False  # confirm what ChartMogul holds before acting (see the module docstring)


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
    """Import new trials' invoices, replace changed ones; every count is what ChartMogul answered.

    `customer_uuid_by_lead`: the customers' uuids as last confirmed (a stale one is found again on
    its 404); `plan_uuid_by_plan`: the plans ChartMogul holds now.
    """
    target = RowTarget(plan.entity, data_source_uuid, run_id)
    tally = Tally.of_plan(plan)
    items = [_InvoiceWrite(c.payload, c.content_hash, c.source_updated_at, None, False) for c in plan.creates]
    items += [
        _InvoiceWrite(
            u.payload,
            u.content_hash,
            u.source_updated_at,
            u.chartmogul_uuid,
            True,
            in_doubt=u.resend or u.chartmogul_uuid is None,
        )
        for u in plan.updates
    ]
    by_customer: dict[str, list[_InvoiceWrite]] = defaultdict(list)
    for item in items:
        invoice = item.invoice
        customer_uuid = customer_uuid_by_lead.get(invoice.customer_external_id)
        if customer_uuid is None or invoice.plan_external_id not in plan_uuid_by_plan:
            missing = (
                f"customer {invoice.customer_external_id} is not synced to ChartMogul yet"
                if customer_uuid is None
                else f"plan {invoice.plan_external_id} is not in ChartMogul's data source (not synced yet, "
                "or deleted there: chartmogul_reconcile with resend creates it again)"
            )
            tally.add(target.failed(invoice.external_id, LookupError(missing)))
            continue
        by_customer[customer_uuid].append(item)
    held = read_held(
        client,
        plan.entity,
        data_source_uuid,
        (item.invoice.external_id for item in items if item.in_doubt),
        known_size=plan.state_size,
        max_workers=max_workers,
    )
    writer = _InvoiceWriter(client, target, data_source_uuid, plan_uuid_by_plan, held)
    writes: list[Write] = [
        ([item.invoice.external_id for item in group], lambda c=customer_uuid, g=group: writer.write(c, g))
        for customer_uuid, group in by_customer.items()
    ]
    aborted = run_writes(
        tally, target, writes, checkpoint=checkpoint, max_workers=max_workers, checkpoint_rows=checkpoint_rows
    )
    return tally.report(aborted)


@dataclass
class _InvoiceWriter:
    """The writes of one customer's trial invoices, each ending in the outcome ChartMogul's answers show."""

    client: ChartMogulClient
    target: RowTarget
    data_source_uuid: str
    plan_uuid_by_plan: Mapping[str, str]
    held: HeldObjects

    def write(self, customer_uuid: str, group: Sequence[_InvoiceWrite]) -> list[WriteResult]:
        """Replace the customer's changed trials one by one, then import its new ones in one request."""
        customer = _Customer(customer_uuid)
        results = [
            self.guarded(item, lambda i=item: self.replace(customer, i)) for item in group if item.changed
        ]
        new = [item for item in group if not item.changed]
        if new:
            results += self.import_new(customer, new)
        return results

    def guarded(self, item: _InvoiceWrite, call: Callable[[], WriteResult]) -> WriteResult:
        """One trial's write; an error fails that trial only (the others of the customer stand)."""
        try:
            return call()
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            return self.target.failed(
                item.invoice.external_id, error, uuid=item.replaces, intended=item.invoice
            )

    def replace(self, customer: _Customer, item: _InvoiceWrite) -> WriteResult:
        """A changed trial: probe-delete by its stored uuid, or confirm first when in doubt."""
        external_id = item.invoice.external_id
        if item.in_doubt:
            if external_id in self.held.unknown:
                return self.failed(
                    item, f"could not read what ChartMogul holds: {self.held.unknown[external_id]}"
                )
            return self.settle(customer, item, self.held.get(external_id))
        assert item.replaces is not None
        try:
            self.client.delete_invoice(item.replaces)
        except NotFoundError:
            log.info(
                "trial %s: invoice %s is gone; confirming what ChartMogul holds.", external_id, item.replaces
            )
            found = self.client.find_invoice(self.data_source_uuid, external_id)
            return self.settle(customer, item, found)
        return self.import_after_delete(customer, item, item.replaces)

    def settle(
        self, customer: _Customer, item: _InvoiceWrite, found: Mapping[str, Any] | None
    ) -> WriteResult:
        """Act on the invoice ChartMogul holds under the trial's external id: none, the same, another."""
        if found is None:
            [result] = self.import_new(customer, [item])
            return result
        differences = invoice_differences(self.body(item), found)
        if not differences:
            return self.confirmed(RowOutcome.UNCHANGED, item, str(found["uuid"]))
        log.info(
            "trial %s: ChartMogul holds another invoice (%s): replacing it.",
            item.invoice.external_id,
            _describe(differences),
        )
        self.client.delete_invoice(str(found["uuid"]))
        return self.import_after_delete(customer, item, str(found["uuid"]))

    def import_after_delete(self, customer: _Customer, item: _InvoiceWrite, deleted: str) -> WriteResult:
        """Import the right invoice straight after its predecessor was deleted: updated, or failed."""
        external_id = item.invoice.external_id
        try:
            answer = self.import_invoices(customer, [item])
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            answer = InvoiceImportResult(errors={external_id: str(error) or type(error).__name__})
        if external_id in answer.imported:
            return self.confirmed(RowOutcome.UPDATED, item, answer.imported[external_id])
        why = answer.errors.get(external_id) or "ChartMogul still holds another invoice under its external id"
        return self.failed(
            item,
            f"the invoice ChartMogul held ({deleted}) was deleted, but the right one was not imported: "
            f"{why}; the next run imports it",
        )

    def import_new(self, customer: _Customer, items: Sequence[_InvoiceWrite]) -> list[WriteResult]:
        """Import invoices ChartMogul should not hold yet; "already exists" is settled, never trusted."""
        try:
            answer = self.import_invoices(customer, items)
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            return [self.target.failed(item.invoice.external_id, error) for item in items]
        results: list[WriteResult] = []
        for item in items:
            external_id = item.invoice.external_id
            if external_id in answer.imported:
                results.append(self.confirmed(RowOutcome.CREATED, item, answer.imported[external_id]))
            elif external_id in answer.existing:
                found = answer.existing[external_id]
                results.append(
                    self.guarded(item, lambda i=item, f=found: self.settle_existing(customer, i, f))
                )
            else:
                message = answer.errors.get(external_id, "not imported")
                refusal = RowError(self.target.entity, external_id, message, 422, retriable=False)
                results.append(self.target.refused(refusal))
        return results

    def settle_existing(
        self, customer: _Customer, item: _InvoiceWrite, found: Mapping[str, Any]
    ) -> WriteResult:
        """ChartMogul said the invoice exists: the same one → unchanged; another → replace it once."""
        differences = invoice_differences(self.body(item), found)
        if not differences:
            return self.confirmed(RowOutcome.UNCHANGED, item, str(found["uuid"]))
        log.info(
            "trial %s exists with other values (%s): replacing it.",
            item.invoice.external_id,
            _describe(differences),
        )
        self.client.delete_invoice(str(found["uuid"]))
        return self.import_after_delete(customer, item, str(found["uuid"]))

    def import_invoices(self, customer: _Customer, items: Sequence[_InvoiceWrite]) -> InvoiceImportResult:
        """POST the invoices to the customer; a 404 (its uuid is stale) is retried once with the uuid the
        lead's external id has now."""
        bodies = [self.body(item) for item in items]
        try:
            return self.client.import_invoices(customer.uuid, bodies)
        except NotFoundError:
            lead = items[0].invoice.customer_external_id
            current = self.client.find_customer(self.data_source_uuid, lead)
            if current is None or str(current["uuid"]) == customer.uuid:
                raise LookupError(
                    f"customer {lead} is not in ChartMogul's data source any more (deleted there?): "
                    "chartmogul_reconcile with resend creates it again"
                ) from None
            log.info("customer %s is now %s (was %s).", lead, current["uuid"], customer.uuid)
            customer.uuid = str(current["uuid"])
            return self.client.import_invoices(customer.uuid, bodies)

    def body(self, item: _InvoiceWrite) -> dict[str, Any]:
        """The invoice as the import sends it."""
        plan_uuid = self.plan_uuid_by_plan[item.invoice.plan_external_id]
        return item.invoice.to_api(plan_uuid=plan_uuid, data_source_uuid=self.data_source_uuid)

    def confirmed(self, outcome: RowOutcome, item: _InvoiceWrite, uuid: str) -> WriteResult:
        return self.target.confirmed(
            outcome, item.invoice, uuid=uuid, digest=item.digest, version=item.version
        )

    def failed(self, item: _InvoiceWrite, reason: str) -> WriteResult:
        return self.target.failed(item.invoice.external_id, RuntimeError(reason), intended=item.invoice)


@dataclass
class _Customer:
    """The customer a group's invoices go to; its uuid is corrected when ChartMogul no longer knows it."""

    uuid: str


def _describe(differences: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{name}: {held!r} instead of {meant!r}" for name, (meant, held) in differences.items())
