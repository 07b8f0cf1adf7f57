"""Load trial invoices: one invoice per trial, all of a customer's in one import request.

A changed trial's invoice is deleted and imported again (ChartMogul has no in-place edit of a trial
line item that keeps its external id). Trials whose customer or plan is not synced fail, and are
retried by the next run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from mogulflow.chartmogul.client import ChartMogulClient
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
    tally = Tally.of_plan(plan)
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
    aborted = run_writes(
        tally, target, writes, checkpoint=checkpoint, max_workers=max_workers, checkpoint_rows=checkpoint_rows
    )
    return tally.report(aborted)
