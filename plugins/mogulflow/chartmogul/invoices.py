"""Invoice flows: imports with per-invoice outcomes, line items, deletes, lookups by external id.

An import batch is the one write whose outcome is per item: the API may import some invoices,
refuse others, say some already exist, or lose its answer altogether. Each invoice ends in exactly
one bucket of `InvoiceImportResult`, settled by looking it up rather than by re-sending blindly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mogulflow.chartmogul.errors import InvoiceError, NotFoundError, TransientError, ValidationError
from mogulflow.chartmogul.flows import Call, Flow, Pages, Pause, create_once, first_match, segment
from mogulflow.chartmogul.retry import RetryPolicy
from mogulflow.chartmogul.shapes import invoice_differences


@dataclass(frozen=True)
class InvoiceImportResult:
    """Per-invoice outcome of an import, keyed by invoice external id.

    `imported`: created by this call; `already_present`: an invoice with that external id was there
    before (not necessarily the one sent: `existing` holds it as ChartMogul answered, for the caller
    to compare); `errors`: refused by the API, with its message. Every invoice sent is in exactly one
    of `imported`, `already_present` and `errors`.
    """

    imported: dict[str, str] = field(default_factory=dict)
    already_present: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    existing: dict[str, dict[str, Any]] = field(default_factory=dict)


def find_invoice(params: Mapping[str, Any], external_id: str) -> Flow[dict[str, Any] | None]:
    """The invoice with this external id among those `params` filter (data source or customer)."""
    pages = Pages("/v1/invoices", "invoices", {**params, "external_id": external_id})
    return (yield from first_match(pages, lambda entry: str(entry.get("external_id")) == external_id))


def import_invoices(
    policy: RetryPolicy, customer_uuid: str, invoices: Sequence[Mapping[str, Any]]
) -> Flow[InvoiceImportResult]:
    """POST /v1/import/customers/{uuid}/invoices until every invoice is imported, present or refused."""
    external_ids = [str(i.get("external_id") or "") for i in invoices]
    if not all(external_ids):
        raise ValueError("every invoice needs an external_id: it is how a retried import is recognised")
    if len(set(external_ids)) != len(external_ids):
        raise ValueError("invoice external ids must be unique within one import call")
    path = f"/v1/import/customers/{segment(customer_uuid)}/invoices"
    waits = policy.waits()
    batch = _ImportBatch(customer_uuid)
    pending = [dict(i) for i in invoices]
    for _attempt in range(policy.max_attempts):
        if not pending:
            return batch.result
        try:
            body = yield Call("POST", path, body={"invoices": pending}, replay_safe=False)
        except ValidationError as error:
            pending = yield from batch.settle_refusal(error, pending)
            continue
        except TransientError as error:
            if not error.maybe_applied:
                raise
            batch.maybe_landed.update(_external_id(i) for i in pending)
            pending = yield from batch.settle_unreported(pending)
            if pending:
                yield Pause(next(waits))
            continue
        yield from batch.settle_answer(body, pending)
        return batch.result
    for invoice in pending:
        batch.result.errors[_external_id(invoice)] = "not imported: the API kept failing"
    return batch.result


@dataclass
class _ImportBatch:
    """One import call's bookkeeping: the outcomes so far, and the invoices a lost answer may hold."""

    customer_uuid: str
    result: InvoiceImportResult = field(default_factory=InvoiceImportResult)
    #: Sent in a batch whose answer was lost: found afterwards, they count as imported by us.
    maybe_landed: set[str] = field(default_factory=set)

    def find(self, invoice: Mapping[str, Any]) -> Flow[dict[str, Any] | None]:
        """The invoice as ChartMogul has it, looked up in its data source (else the customer's)."""
        if invoice.get("data_source_uuid"):
            params = {"data_source_uuid": invoice["data_source_uuid"]}
        else:
            params = {"customer_uuid": self.customer_uuid}
        return find_invoice(params, _external_id(invoice))

    def settle_unreported(self, invoices: list[dict[str, Any]]) -> Flow[list[dict[str, Any]]]:
        """Look up invoices the API did not complain about; the ones still absent are pending."""
        # Did it import them ("partial" server), or none of the batch ("all or nothing")?
        still_pending = []
        for invoice in invoices:
            found = yield from self.find(invoice)
            if found is None:
                still_pending.append(invoice)
            else:
                self.found(invoice, found)
        return still_pending

    def settle_refusal(
        self, error: ValidationError, pending: list[dict[str, Any]]
    ) -> Flow[list[dict[str, Any]]]:
        """Sort a refused batch: existing invoices are done, refused ones failed, the rest looked up."""
        per_invoice = _match_invoice_errors(pending, error.invoice_errors)
        unreported: list[dict[str, Any]] = []
        for invoice in pending:
            ext = _external_id(invoice)
            complaint = per_invoice.get(ext)
            if complaint is None and not error.invoice_errors:
                # One message for the whole batch (another error family): if it says
                # "already exists" and the batch is one invoice, it is that invoice.
                if error.already_exists and len(pending) == 1:
                    complaint = InvoiceError(ext, 0, error.field_errors)
                else:
                    self.result.errors[ext] = error.message
                    continue
            if complaint is None or not complaint.errors:
                unreported.append(invoice)
            elif complaint.already_exists:
                yield from self.settle_existing(invoice)
            else:
                self.result.errors[ext] = complaint.message
        return (yield from self.settle_unreported(unreported))

    def settle_existing(self, invoice: Mapping[str, Any]) -> Flow[None]:
        """An invoice the API says exists: ours if a lost answer may have imported it, else present (and
        what it holds kept in `existing`: "already exists" is not proof that it is the one sent)."""
        ext = _external_id(invoice)
        found = yield from self.find(invoice)
        if found is None:
            self.result.errors[ext] = f"the API says it exists but no invoice {ext!r} was found"
        elif ext in self.maybe_landed:
            self.found(invoice, found)
        else:
            self.result.already_present[ext] = str(found["uuid"])
            self.result.existing[ext] = dict(found)

    def found(self, invoice: Mapping[str, Any], found: Mapping[str, Any]) -> None:
        """An invoice found after a lost answer: ours (imported) if it holds what was sent, else one
        that was there before (present, kept in `existing` for the caller to compare)."""
        ext = _external_id(invoice)
        if invoice_differences(invoice, found):
            self.result.already_present[ext] = str(found["uuid"])
            self.result.existing[ext] = dict(found)
        else:
            self.result.imported[ext] = str(found["uuid"])

    def settle_answer(self, body: Mapping[str, Any], pending: list[dict[str, Any]]) -> Flow[None]:
        """Record an accepted batch, invoice by invoice, from the answer (or a lookup)."""
        answered = {str(i.get("external_id")): i for i in (body.get("invoices") or [])}
        for invoice in pending:
            ext = _external_id(invoice)
            returned = answered.get(ext)
            if returned and returned.get("errors"):
                self.result.errors[ext] = _describe_errors(returned["errors"])
            elif returned and returned.get("uuid"):
                self.result.imported[ext] = str(returned["uuid"])
            else:
                # 201 without that invoice in the answer: believe the server's state, not the echo.
                found = yield from self.find(invoice)
                if found is not None:
                    self.found(invoice, found)
                else:
                    self.result.errors[ext] = "accepted by the API but not found afterwards"


def add_line_item(
    policy: RetryPolicy, invoice_uuid: str, line_item: Mapping[str, Any]
) -> Flow[dict[str, Any]]:
    """POST a line item once in effect; an existing item with its external id is returned."""
    external_id = line_item.get("external_id")

    def find() -> Flow[dict[str, Any] | None]:
        if external_id is None:
            return None
        invoice = yield Call("GET", f"/v1/invoices/{segment(invoice_uuid)}")
        for item in invoice.get("line_items") or []:
            if item.get("external_id") == external_id:
                return dict(item)
        return None

    path = f"/v1/import/invoices/{segment(invoice_uuid)}/line_items"
    answer = yield from create_once(policy, "line item", path, line_item, find, adopt_existing=True)
    return answer.body


def delete_invoice(policy: RetryPolicy, uuid: str) -> Flow[None]:
    """DELETE /v1/invoices/{uuid}; a 404 after our own lost attempt means that attempt deleted it."""
    waits = policy.waits()
    maybe_landed = False
    for _attempt in range(policy.max_attempts):
        try:
            yield Call("DELETE", f"/v1/invoices/{segment(uuid)}", replay_safe=False)
            return None
        except NotFoundError:
            if maybe_landed:
                return None  # our earlier attempt deleted it
            raise
        except TransientError as error:
            if not error.maybe_applied:
                raise
            maybe_landed = True
            yield Pause(next(waits))
    raise TransientError("invoice delete kept failing", method="DELETE", path=f"/v1/invoices/{uuid}")


def _external_id(invoice: Mapping[str, Any]) -> str:
    """An invoice's external id as the result's key (every invoice has one: checked on entry)."""
    return str(invoice["external_id"])


def _match_invoice_errors(
    pending: Sequence[Mapping[str, Any]], invoice_errors: Sequence[InvoiceError]
) -> dict[str, InvoiceError]:
    """Pair each per-invoice complaint with the invoice it is about: by external id, else position."""
    by_ext = {e.external_id: e for e in invoice_errors if e.external_id}
    matched: dict[str, InvoiceError] = {}
    for index, invoice in enumerate(pending):
        ext = _external_id(invoice)
        if ext in by_ext:
            matched[ext] = by_ext[ext]
        else:
            positional = next((e for e in invoice_errors if not e.external_id and e.index == index), None)
            if positional is not None:
                matched[ext] = positional
    return matched


def _describe_errors(errors: object) -> str:
    """A returned invoice's `errors` (a field map, or anything else) as one line."""
    if isinstance(errors, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    return str(errors)
