"""JSON (bulk) imports: checking a payload when it arrives and applying it when it falls due.

A payload holds flat arrays linked by external ids: ``plans[]``, ``customers[]`` (upserted by
external id), ``invoices[]`` (``customer_external_id``), ``line_items[]`` (``invoice_external_id``,
``plan_external_id``), ``transactions[]`` (``invoice_external_id``). The resulting
``status_details`` has a ``plans`` entry and one entry per customer external id, each part
``{"status": "imported"}`` or, [UNVERIFIED format], ``{"status": "failed", "errors": {...}}``;
a failed record is not created.
"""

from __future__ import annotations

from typing import Any, Protocol

from mogulflow_sandbox.api_errors import ApiError, invalid_parameter

MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
RECORD_ARRAYS = ("customers", "plans", "invoices", "line_items", "transactions")
IMPORTED = {"status": "imported"}


class ImportTarget(Protocol):
    """What a payload is applied to (the sandbox state, already under its lock).

    A protocol rather than the state's class, so this module needs nothing of the state's and the
    imports between them run one way only.
    """

    def upsert_customer_for_import(self, data_source_uuid: str, raw: dict[str, Any]) -> None:
        """Create the customer, or update it when (data source, external id) exists; raises `ApiError`."""

    def upsert_plan_for_import(self, data_source_uuid: str, raw: dict[str, Any]) -> None:
        """Create the plan, or update it when (data source, external id) exists; raises `ApiError`."""

    def plan_uuid_for_import(self, data_source_uuid: str, plan_external_id: str) -> str | None:
        """The uuid of the plan (data source, external id), or None."""

    def import_invoice_for_import(
        self, data_source_uuid: str, customer_external_id: str, raw: dict[str, Any]
    ) -> dict[str, str]:
        """Store one invoice for a customer of the data source; its errors (empty when stored)."""


def check_payload_shape(body: dict[str, Any]) -> None:
    """400 when a record array is not an array of objects."""
    for name in RECORD_ARRAYS:
        records = body.get(name, [])
        if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
            raise invalid_parameter(name)


def apply_json_import(target: ImportTarget, data_source_uuid: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Apply a payload to ``target`` (under its lock) and return the ``status_details``."""
    details: dict[str, Any] = {"plans": _import_plans(target, data_source_uuid, payload.get("plans", []))}
    failed_customers: set[str] = set()
    for raw in payload.get("customers", []):
        external_id = str(raw.get("external_id"))
        try:
            target.upsert_customer_for_import(data_source_uuid, raw)
            part = IMPORTED
        except ApiError as error:
            failed_customers.add(external_id)
            part = _failed(_error_text(error))
        details.setdefault(external_id, {})["customers"] = part

    line_items_by_invoice = _group(payload.get("line_items", []), "invoice_external_id")
    transactions_by_invoice = _group(payload.get("transactions", []), "invoice_external_id")
    invoice_errors: dict[str, dict[str, dict[str, str]]] = {}
    for raw in payload.get("invoices", []):
        customer_external_id = str(raw.get("customer_external_id"))
        invoice_external_id = str(raw.get("external_id"))
        invoice = {
            **raw,
            "line_items": [
                _with_plan_uuid(target, data_source_uuid, item)
                for item in line_items_by_invoice.get(invoice_external_id, [])
            ],
            "transactions": transactions_by_invoice.get(invoice_external_id, []),
        }
        if customer_external_id in failed_customers:
            errors = {"customer_external_id": "The customer of this invoice was not imported."}
        else:
            errors = target.import_invoice_for_import(data_source_uuid, customer_external_id, invoice)
        invoice_errors.setdefault(customer_external_id, {})
        if errors:
            invoice_errors[customer_external_id][invoice_external_id] = errors
    for customer_external_id, errors_by_invoice in invoice_errors.items():
        entry = details.setdefault(customer_external_id, {})
        for part_name, prefix in (
            ("invoices", ""),
            ("line_items", "line_items."),
            ("transactions", "transactions."),
        ):
            entry[part_name] = _part_status(errors_by_invoice, prefix)
    return details


def _import_plans(target: ImportTarget, data_source_uuid: str, plans: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    for raw in plans:
        try:
            target.upsert_plan_for_import(data_source_uuid, raw)
        except ApiError as error:
            errors[str(raw.get("external_id"))] = _error_text(error)
    return _failed(errors) if errors else IMPORTED


def _with_plan_uuid(target: ImportTarget, data_source_uuid: str, item: dict[str, Any]) -> dict[str, Any]:
    """A bulk line item names its plan by ``plan_external_id``; the invoice rules want ``plan_uuid``."""
    plan_external_id = item.get("plan_external_id")
    if plan_external_id is None or "plan_uuid" in item:
        return item
    plan_uuid = target.plan_uuid_for_import(data_source_uuid, str(plan_external_id))
    return {**item, "plan_uuid": plan_uuid or f"unknown plan external id {plan_external_id}"}


def _part_status(errors_by_invoice: dict[str, dict[str, str]], prefix: str) -> dict[str, Any]:
    """One part's status: the invoices whose errors concern it (all errors for ``invoices``)."""
    failed: dict[str, Any] = {}
    for invoice_external_id, errors in errors_by_invoice.items():
        own = (
            errors
            if not prefix
            else {k.removeprefix(prefix): v for k, v in errors.items() if k.startswith(prefix)}
        )
        if own:
            failed[invoice_external_id] = own
    return _failed(failed) if failed else IMPORTED


def _failed(errors: dict[str, Any]) -> dict[str, Any]:
    return {"status": "failed", "errors": errors}


def _error_text(error: ApiError) -> dict[str, Any]:
    """The body's field map (family A) or message (family B) of a rejected record."""
    body = error.body
    if "errors" in body:
        return body["errors"]
    return {str(body.get("param")): body.get("message")}


def _group(records: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str(record.get(key)), []).append(record)
    return grouped


def check_payload_size(size_in_bytes: int) -> None:
    """413 for a payload above the documented 5 MB."""
    if size_in_bytes > MAX_PAYLOAD_BYTES:
        raise ApiError(413, {"code": 413, "message": "Payload exceeds the 5 MB limit", "param": None})
