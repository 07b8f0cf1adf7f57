"""Shapes: how the API's objects read, written once for every room that reads them.

A merged customer answers for several (data source, external id) identities, listed side by side in
`data_source_uuids` and `external_ids`; an invoice's trial is one of its line items. Pure functions
of API JSON: no requests here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mogulflow.values.field_equality import same_value

#: An identity of a customer: (data source uuid, external id).
Identity = tuple[str, str]

#: The invoice fields a trial invoice is compared on: the invoice's own, then its trial line item's.
INVOICE_FIELDS = ("date", "currency", "customer_external_id")
LINE_ITEM_FIELDS = (
    "type",
    "external_id",
    "subscription_external_id",
    "plan_uuid",
    "service_period_start",
    "service_period_end",
    "amount_in_cents",
    "quantity",
)


def identities(customer: Mapping[str, Any]) -> list[Identity]:
    """Every (data source, external id) the customer answers for (one, unless it was merged)."""
    sources = customer.get("data_source_uuids") or []
    ids = customer.get("external_ids") or []
    if sources and len(sources) == len(ids):
        return [(str(source), str(i)) for source, i in zip(sources, ids, strict=True)]
    own, source = customer.get("external_id"), customer.get("data_source_uuid")
    return [] if own is None else [(str(source or ""), str(own))]


def external_ids_in(customer: Mapping[str, Any], data_source_uuid: str) -> list[str]:
    """The customer's external ids in this data source."""
    return [external_id for source, external_id in identities(customer) if source in ("", data_source_uuid)]


def is_merged(customer: Mapping[str, Any]) -> bool:
    """Whether the customer holds more than one record: a merge (by ChartMogul, a person or us) made it."""
    return len(identities(customer)) > 1


def describe_customer(customer: Mapping[str, Any]) -> str:
    """`cus_… (records: ds_…/lead_1, ds_…/cus_9)`: a customer as a reason or a report names it."""
    records = ", ".join(f"{source}/{external_id}" for source, external_id in identities(customer))
    return f"{customer.get('uuid')} (records: {records})"


def trial_line_item(invoice: Mapping[str, Any]) -> Mapping[str, Any]:
    """The invoice's trial line item (else its first line item; {} when it has none)."""
    items = invoice.get("line_items") or []
    return next((item for item in items if item.get("type") == "trial"), items[0] if items else {})


def invoice_fields(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """The compared fields of an invoice (an import body or the API's answer), flat; only those present."""
    line = trial_line_item(invoice)
    fields = {name: invoice[name] for name in INVOICE_FIELDS if name in invoice}
    fields.update({f"line_items.{name}": line[name] for name in LINE_ITEM_FIELDS if name in line})
    return fields


def invoice_differences(meant: Mapping[str, Any], held: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field → (meant, held) where the invoice ChartMogul holds is not the one meant (the one diff rule).

    Only fields the held invoice shows are compared: an answer that leaves a field out says nothing
    about it, and must not cause a replacement on every run.
    """
    ours, theirs = invoice_fields(meant), invoice_fields(held)
    return {
        name: (value, theirs[name])
        for name, value in ours.items()
        if name in theirs and not same_value(value, theirs[name])
    }
