"""The invoices of the sandbox account, with their line items, transactions and subscriptions.

Invoices, line items and transactions are indexed by (data source, external id), the keys the
duplicate checks need; invoices also by customer. Subscription uuids are handed out per
(data source, subscription external id) and kept, so later invoices of a subscription share one.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from mogulflow_sandbox.api_errors import (
    INVOICE_NOT_FOUND_MESSAGE,
    bare_error,
    detailed_error,
    field_errors,
    missing_parameter,
)
from mogulflow_sandbox.customers import CustomerStore, apply_paid_status
from mogulflow_sandbox.ids import RunningNumber, is_prefixed_uuid, new_uuid
from mogulflow_sandbox.pagination import Page, PageRequest, page_body, paginate
from mogulflow_sandbox.plans import PlanStore
from mogulflow_sandbox.record_store import RecordStore
from mogulflow_sandbox.records import (
    CustomerRecord,
    Identity,
    InvoiceRecord,
    LineItemRecord,
    TransactionRecord,
)
from mogulflow_sandbox.request_log import note_change
from mogulflow_sandbox.rules import (
    INVOICE_EXTERNAL_ID_TAKEN,
    LINE_ITEM_EXTERNAL_ID_TAKEN,
    TRANSACTION_EXTERNAL_ID_TAKEN,
    InvoiceDraft,
    LineItemDraft,
    is_blank,
    read_invoice,
    read_line_item,
)
from mogulflow_sandbox.settings import SandboxSettings
from mogulflow_sandbox.timestamps import utc_now


class InvoiceStore(RecordStore[InvoiceRecord]):
    """The imported invoices of every customer."""

    record_type = InvoiceRecord

    def __init__(
        self,
        customers: CustomerStore,
        plans: PlanStore,
        settings: SandboxSettings,
        positions: RunningNumber,
    ) -> None:
        super().__init__()
        self._customers = customers
        self._plans = plans
        self._settings = settings
        # shared with the plans: one creation order, the position list cursors point at
        self._positions = positions
        self._by_external_id: dict[Identity, str] = {}
        # per customer uuid an insertion-ordered set of invoice uuids
        self._by_customer: dict[str, dict[str, None]] = {}
        # per data source its invoices by ascending position: a listing page is cut from it directly
        # (a million invoices: sorting them all for every page took a second and more per page)
        self._by_data_source: dict[str, list[InvoiceRecord]] = {}
        self._line_item_by_external_id: dict[Identity, str] = {}
        self._transaction_by_external_id: dict[Identity, str] = {}
        self._subscription_uuids: dict[Identity, str] = {}

    # -- imports -----------------------------------------------------------------------------------

    def import_batch(self, customer_uuid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/import/customers/{uuid}/invoices`` → (status, body).

        201 with every stored invoice; 422 family F listing each invoice with its ``errors`` when one
        fails. ``invoice_batch_mode`` [UNVERIFIED] decides whether the good ones of a failing batch are
        stored (``partial``; they then appear in full in the 422 body) or not (``all_or_nothing``).
        An unknown customer uuid answers the misleading 404 the real API gives.
        """
        customer = self._customers.find(customer_uuid)
        if customer is None:
            raise detailed_error(404, INVOICE_NOT_FOUND_MESSAGE, "invoice")
        raw_invoices = body.get("invoices")
        if not isinstance(raw_invoices, list):
            raise missing_parameter("invoices")
        drafts = self._check_batch(customer, raw_invoices)
        if all(not draft.errors for draft in drafts):
            stored = [self._store(customer, draft) for draft in drafts]
            return 201, {"invoices": [invoice.to_api() for invoice in stored]}
        answers: list[dict[str, Any]] = []
        for draft in drafts:
            if not draft.errors and self._settings.invoice_batch_mode == "partial":
                answers.append(self._store(customer, draft).to_api())
            else:
                answers.append({"external_id": draft.external_id, "errors": draft.errors})
        return 422, {"invoices": answers}

    def import_one(
        self, data_source_uuid: str, customer_external_id: str, raw: dict[str, Any]
    ) -> dict[str, str]:
        """Store one invoice of a JSON import for a customer of the data source; its errors (none: stored)."""
        customer = self._customers.find_by_identity((data_source_uuid, customer_external_id))
        if customer is None:
            return {"customer_external_id": "No customer with this external ID in the data source."}
        raw = {**raw, "data_source_uuid": data_source_uuid, "customer_external_id": customer_external_id}
        (draft,) = self._check_batch(customer, [raw])
        if not draft.errors:
            self._store(customer, draft)
        return draft.errors

    def _check_batch(self, customer: CustomerRecord, raw_invoices: list[Any]) -> list[InvoiceDraft]:
        """Read each invoice, then add owner and duplicate errors (against the store and the batch)."""
        drafts: list[InvoiceDraft] = []
        batch_invoices: set[Identity] = set()
        batch_line_items: set[Identity] = set()
        batch_transactions: set[Identity] = set()
        for raw in raw_invoices:
            owner, owner_error = _invoice_owner(customer, raw)
            draft = read_invoice(raw, owner[0], self._plans.find, self._settings.strictness, utc_now())
            errors = dict(draft.errors)
            if owner_error:
                errors.setdefault("customer_external_id", owner_error)
            # the order of these checks is the order of the keys in the 422 body
            _flag_taken(
                errors,
                "external_id",
                INVOICE_EXTERNAL_ID_TAKEN,
                _keys(owner[0], [draft.external_id]),
                self._by_external_id,
                batch_invoices,
            )
            _flag_taken(
                errors,
                "line_items.external_id",
                LINE_ITEM_EXTERNAL_ID_TAKEN,
                _keys(owner[0], [item.external_id for item in draft.line_items]),
                self._line_item_by_external_id,
                batch_line_items,
            )
            _flag_taken(
                errors,
                "transactions.external_id",
                TRANSACTION_EXTERNAL_ID_TAKEN,
                _keys(owner[0], [transaction.external_id for transaction in draft.transactions]),
                self._transaction_by_external_id,
                batch_transactions,
            )
            drafts.append(
                dataclasses.replace(
                    draft, errors=errors, data_source_uuid=owner[0], customer_external_id=owner[1]
                )
            )
        return drafts

    def _store(self, customer: CustomerRecord, draft: InvoiceDraft) -> InvoiceRecord:
        assert draft.date is not None and draft.external_id is not None and draft.data_source_uuid is not None
        data_source_uuid = draft.data_source_uuid
        invoice = InvoiceRecord(
            uuid=new_uuid("inv"),
            external_id=draft.external_id,
            data_source_uuid=data_source_uuid,
            customer_uuid=customer.uuid,
            customer_external_id=draft.customer_external_id or "",
            date=draft.date,
            currency=draft.currency,
            due_date=draft.due_date,
            seq=self._positions.take(),
            line_items=[self._new_line_item(data_source_uuid, item) for item in draft.line_items],
            transactions=[
                TransactionRecord(
                    uuid=new_uuid("tr"),
                    external_id=t.external_id,
                    type=t.type,
                    date=t.date,
                    result=t.result,
                    amount_in_cents=t.amount_in_cents,
                )
                for t in draft.transactions
            ],
        )
        self._keep(invoice)
        note_change("invoice", invoice.data_source_uuid, invoice.external_id, "created")
        apply_paid_status(customer, invoice.line_items)
        return invoice

    def _new_line_item(self, data_source_uuid: str, draft: LineItemDraft) -> LineItemRecord:
        subscription_uuid = None
        if draft.subscription_external_id is not None:
            key = (data_source_uuid, draft.subscription_external_id)
            subscription_uuid = self._subscription_uuids.setdefault(key, new_uuid("sub"))
        return LineItemRecord(
            uuid=new_uuid("li"),
            type=draft.type,
            external_id=draft.external_id,
            amount_in_cents=draft.amount_in_cents,
            quantity=draft.quantity,
            plan_uuid=draft.plan_uuid,
            subscription_external_id=draft.subscription_external_id,
            subscription_uuid=subscription_uuid,
            service_period_start=draft.service_period_start,
            service_period_end=draft.service_period_end,
            echoed=dict(draft.echoed),
        )

    def add_line_item(self, invoice_uuid: str, body: dict[str, Any]) -> LineItemRecord:
        """``POST /v1/import/invoices/{uuid}/line_items``: the new line item; 404 family C; 422 family A."""
        invoice = self.get(invoice_uuid)
        errors, draft = read_line_item(body, invoice.data_source_uuid, self._plans.find)
        external_id = body.get("external_id")
        if (
            external_id is not None
            and (invoice.data_source_uuid, external_id) in self._line_item_by_external_id
        ):
            errors.setdefault("external_id", LINE_ITEM_EXTERNAL_ID_TAKEN)
        if errors or draft is None:
            raise field_errors(errors)
        item = self._new_line_item(invoice.data_source_uuid, draft)
        invoice.line_items.append(item)
        note_change("invoice", invoice.data_source_uuid, invoice.external_id, "updated")
        if item.external_id is not None:
            self._line_item_by_external_id[(invoice.data_source_uuid, item.external_id)] = item.uuid
        apply_paid_status(self._customers.get(invoice.customer_uuid), [item])
        return item

    # -- lookups and removal -----------------------------------------------------------------------

    def get(self, invoice_uuid: str) -> InvoiceRecord:
        """The invoice: 422 family D for a malformed uuid, 404 family C for an unknown one."""
        if not is_prefixed_uuid(invoice_uuid, "inv"):
            raise detailed_error(422, "Invalid UUID passed", "uuid")
        return self._get(invoice_uuid, lambda: bare_error(404, INVOICE_NOT_FOUND_MESSAGE))

    def remove(self, invoice: InvoiceRecord) -> None:
        """Forget the invoice with its line items and transactions."""
        note_change("invoice", invoice.data_source_uuid, invoice.external_id, "deleted")
        del self._records[invoice.uuid]
        in_source = self._by_data_source.get(invoice.data_source_uuid, [])
        at = bisect.bisect_left(in_source, invoice.seq, key=_position)
        if at < len(in_source) and in_source[at] is invoice:
            del in_source[at]
        self._by_external_id.pop((invoice.data_source_uuid, invoice.external_id), None)
        self._by_customer.get(invoice.customer_uuid, {}).pop(invoice.uuid, None)
        for item in invoice.line_items:
            self._line_item_by_external_id.pop((invoice.data_source_uuid, item.external_id or ""), None)
        for transaction in invoice.transactions:
            self._transaction_by_external_id.pop(
                (invoice.data_source_uuid, transaction.external_id or ""), None
            )

    def remove_data_source(self, data_source_uuid: str) -> None:
        """Forget every invoice of the data source."""
        for invoice in self.matching(data_source_uuid=data_source_uuid):
            self.remove(invoice)

    def remove_customer_invoices(self, customer_uuid: str) -> None:
        """Forget every invoice of the customer (it is being deleted)."""
        for invoice_uuid in list(self._by_customer.get(customer_uuid, ())):
            self.remove(self._records[invoice_uuid])
        self._by_customer.pop(customer_uuid, None)

    def move(self, from_uuid: str, to_uuid: str, owner: Identity | None = None) -> None:
        """Hand a customer's invoices (only those of source customer ``owner`` if given) to another one."""
        for invoice_uuid in list(self._by_customer.get(from_uuid, ())):
            invoice = self._records[invoice_uuid]
            if owner is None or invoice.owner == owner:
                invoice.customer_uuid = to_uuid
                del self._by_customer[from_uuid][invoice_uuid]
                self._by_customer.setdefault(to_uuid, {})[invoice_uuid] = None

    def matching(
        self, data_source_uuid: str | None = None, customer_uuid: str | None = None
    ) -> list[InvoiceRecord]:
        """Every invoice (of one data source / customer), in the order they were stored."""
        return [
            invoice
            for invoice in self._records.values()
            if data_source_uuid in (None, invoice.data_source_uuid)
            and customer_uuid in (None, invoice.customer_uuid)
        ]

    # -- lists -------------------------------------------------------------------------------------

    def list_customer_page(self, customer_uuid: str, request: PageRequest) -> dict[str, Any]:
        """``GET /v1/import/customers/{uuid}/invoices``: ``{"customer_uuid", "invoices", ...}``."""
        if self._customers.find(customer_uuid) is None:
            raise detailed_error(404, INVOICE_NOT_FOUND_MESSAGE, "invoice")
        invoices = [self._records[u] for u in self._by_customer.get(customer_uuid, ())]
        return {"customer_uuid": customer_uuid} | _page_body(invoices, request)

    def list_page(
        self,
        request: PageRequest,
        customer_uuid: str | None,
        data_source_uuid: str | None,
        external_id: str | None,
    ) -> dict[str, Any]:
        """``GET /v1/invoices``: filtered by customer, data source, external id; one cursor page."""
        if data_source_uuid is not None and customer_uuid is None and external_id is None:
            in_source = self._by_data_source.get(data_source_uuid, [])
            return _render_page(paginate(in_source, _position, request), request)
        if data_source_uuid is not None and external_id is not None:
            found = self._by_external_id.get((data_source_uuid, external_id))
            candidates = [self._records[found]] if found else []
        elif customer_uuid is not None:
            candidates = [self._records[u] for u in self._by_customer.get(customer_uuid, ())]
        else:
            candidates = list(self._records.values())
        chosen = [
            invoice
            for invoice in candidates
            if customer_uuid in (None, invoice.customer_uuid)
            and data_source_uuid in (None, invoice.data_source_uuid)
            and external_id in (None, invoice.external_id)
        ]
        return _page_body(chosen, request)

    # -- API and state-file form -------------------------------------------------------------------

    def to_api(self) -> list[dict[str, Any]]:
        """Every invoice in API form."""
        return [invoice.to_api() for invoice in self._records.values()]

    def subscriptions_to_storage(self) -> list[list[str]]:
        """The subscription uuids handed out, as ``[data source, external id, uuid]`` rows."""
        return [[ds, ext, sub] for (ds, ext), sub in self._subscription_uuids.items()]

    def load_subscriptions(self, subscriptions: list[list[str]]) -> None:
        """Take back the subscription uuids `subscriptions_to_storage` wrote."""
        self._subscription_uuids = {(ds, ext): sub for ds, ext, sub in subscriptions}

    def note_subscriptions(self, record: InvoiceRecord) -> None:
        """Remember the subscription uuids of an invoice added as it is (`SandboxState.add_records`)."""
        for item in record.line_items:
            if item.subscription_external_id is not None and item.subscription_uuid is not None:
                key = (record.data_source_uuid, item.subscription_external_id)
                self._subscription_uuids.setdefault(key, item.subscription_uuid)

    def _keep(self, record: InvoiceRecord) -> None:
        self._records[record.uuid] = record
        bisect.insort(self._by_data_source.setdefault(record.data_source_uuid, []), record, key=_position)
        self._by_external_id[(record.data_source_uuid, record.external_id)] = record.uuid
        self._by_customer.setdefault(record.customer_uuid, {})[record.uuid] = None
        for item in record.line_items:
            if item.external_id is not None:
                self._line_item_by_external_id[(record.data_source_uuid, item.external_id)] = item.uuid
        for transaction in record.transactions:
            if transaction.external_id is not None:
                key = (record.data_source_uuid, transaction.external_id)
                self._transaction_by_external_id[key] = transaction.uuid


def _invoice_owner(customer: CustomerRecord, raw: object) -> tuple[Identity, str | None]:
    """The source customer an invoice belongs to, and why it cannot belong to ``customer`` if so.

    Without ``data_source_uuid``/``customer_external_id`` it is the customer's own record; a merged
    customer needs both (the seed guide: "required to contain"), and they must name one of its records.
    """
    if not isinstance(raw, dict):
        return customer.identities[0], None
    data_source_uuid = raw.get("data_source_uuid")
    external_id = raw.get("customer_external_id")
    if is_blank(data_source_uuid) and is_blank(external_id):
        if len(customer.identities) > 1:
            return customer.identities[0], (
                "customer_external_id and data_source_uuid are required for merged customers."
            )
        return customer.identities[0], None
    if is_blank(external_id):
        owned = [i for i in customer.identities if i[0] == data_source_uuid]
        if not owned or len(customer.identities) > 1:
            return (str(data_source_uuid), ""), "customer_external_id is required with data_source_uuid."
        return owned[0], None
    identity = (str(data_source_uuid or customer.data_source_uuid), str(external_id))
    if identity not in customer.identities:
        return identity, "The customer external ID does not belong to this customer."
    return identity, None


def _keys(data_source_uuid: str, external_ids: list[str | None]) -> list[Identity]:
    """The (data source, external id) keys of the records that have an external id."""
    return [(data_source_uuid, external_id) for external_id in external_ids if external_id is not None]


def _flag_taken(
    errors: dict[str, str],
    field: str,
    message: str,
    keys: Iterable[Identity],
    stored: Mapping[Identity, str],
    in_batch: set[Identity],
) -> None:
    """Add ``message`` under ``field`` when a key is stored already or repeats within the batch."""
    for key in keys:
        if key in stored or key in in_batch:
            errors.setdefault(field, message)
        in_batch.add(key)


def _position(invoice: InvoiceRecord) -> int:
    return invoice.seq


def _page_body(invoices: list[InvoiceRecord], request: PageRequest) -> dict[str, Any]:
    """One cursor page of invoices in creation order; an empty first page has ``total_pages`` 0."""
    return _render_page(paginate(sorted(invoices, key=_position), _position, request), request)


def _render_page(page: Page[InvoiceRecord], request: PageRequest) -> dict[str, Any]:
    return page_body(
        "invoices", [invoice.to_api() for invoice in page.items], page, request, empty_total_pages=0
    )
