"""What the sandbox stores, and how each record reads as ChartMogul JSON.

Records are mutable (the state updates them in place under its lock); ``to_api`` renders the
response shape the recordings show, hyphenated keys included. ``to_storage``/``from_storage`` are
the state-file form: plain JSON with ISO timestamps.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pycountry

from mogulflow_sandbox.timestamps import format_offset_timestamp, format_timestamp

Identity = tuple[str, str]
"""A source customer: (data_source_uuid, external_id)."""

LINE_ITEM_TYPES = ("subscription", "one_time", "trial")
#: optional line item fields echoed as sent, with the value the API shows when they are absent
LINE_ITEM_ECHOED_DEFAULTS: dict[str, Any] = {
    "subscription_set_external_id": None,
    "prorated": False,
    "proration_type": None,
    "cancelled_at": None,
    "description": None,
    "discount_code": "",
    "discount_amount_in_cents": 0,
    "discount_description": None,
    "tax_amount_in_cents": 0,
    "transaction_fees_in_cents": 0,
    "transaction_fees_currency": None,
    "account_code": "",
    "event_order": None,
}


@dataclass
class DataSourceRecord:
    """A data source; ``system`` is "Custom" when made through the API, e.g. "Stripe" in tests."""

    uuid: str
    name: str
    system: str
    created_at: datetime

    def to_api(self) -> dict[str, Any]:
        """The data source object of ``GET /v1/data_sources/{uuid}``."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "system": self.system,
            "created_at": format_timestamp(self.created_at),
            "status": "idle",
        }


@dataclass
class CustomerRecord:
    """One ChartMogul customer; after merges it answers for several source identities."""

    id: int
    uuid: str
    data_source_uuid: str
    external_id: str
    name: str
    created_at: datetime
    email: str = ""
    company: str = ""
    country: str | None = None
    state: str | None = None
    city: str | None = None
    zip: str | None = None
    lead_created_at: datetime | None = None
    free_trial_started_at: datetime | None = None
    owner: str | None = None
    website_url: str | None = None
    tags: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    custom_types: dict[str, str] = field(default_factory=dict)  # key → String, Integer, Decimal, ...
    status: str = "New Lead"
    customer_since: datetime | None = None
    #: every (data_source_uuid, external_id) merged into this customer, its own first
    identities: list[Identity] = field(default_factory=list)

    def to_api(self, billing_system_type: str) -> dict[str, Any]:
        """The customer object as create/retrieve/list answer it (2023 recording key order)."""
        return {
            "id": self.id,
            "uuid": self.uuid,
            "external_id": self.external_id,
            "name": self.name,
            "email": self.email,
            "status": self.status,
            "customer-since": format_offset_timestamp(self.customer_since),
            "attributes": {
                "custom": dict(self.custom),
                "clearbit": {},
                "stripe": {},
                "tags": list(self.tags),
            },
            "data_source_uuid": self.data_source_uuid,
            "data_source_uuids": [data_source_uuid for data_source_uuid, _ in self.identities],
            "external_ids": [external_id for _, external_id in self.identities],
            "company": self.company,
            "country": self.country,
            "state": self.state,
            "city": self.city,
            "zip": self.zip,
            "lead_created_at": format_timestamp(self.lead_created_at),
            "free_trial_started_at": format_timestamp(self.free_trial_started_at),
            "address": {
                "country": country_name(self.country),
                "state": state_name(self.country, self.state),
                "city": self.city,
                "address_zip": self.zip,
            },
            "mrr": 0,
            "arr": 0,
            "billing-system-url": None,
            "chartmogul-url": f"https://app.chartmogul.com/#/customers/{self.id}-{_url_slug(self.name)}",
            "billing-system-type": billing_system_type,
            "currency": "USD",
            "currency-sign": "$",
            "owner": self.owner,
            "website_url": self.website_url,
        }


@dataclass
class PlanRecord:
    """A plan of one data source."""

    uuid: str
    data_source_uuid: str
    external_id: str
    name: str
    interval_count: int
    interval_unit: str
    seq: int = 0  # creation order, the position cursors point at

    def to_api(self) -> dict[str, Any]:
        """The plan object of ``GET /v1/plans/{uuid}``."""
        return {
            "uuid": self.uuid,
            "data_source_uuid": self.data_source_uuid,
            "name": self.name,
            "interval_count": self.interval_count,
            "interval_unit": self.interval_unit,
            "external_id": self.external_id,
        }


@dataclass
class LineItemRecord:
    """A line item; fields the sandbox does not interpret are kept in ``echoed`` and sent back."""

    uuid: str
    type: str
    external_id: str | None
    amount_in_cents: int
    quantity: int
    plan_uuid: str | None = None
    subscription_external_id: str | None = None
    subscription_uuid: str | None = None
    service_period_start: datetime | None = None
    service_period_end: datetime | None = None
    echoed: dict[str, Any] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The line item object inside an invoice (and of the add-a-line-item answer)."""
        body: dict[str, Any] = {"uuid": self.uuid, "external_id": self.external_id, "type": self.type}
        if self.type != "one_time":
            body |= {
                "subscription_uuid": self.subscription_uuid,
                "subscription_external_id": self.subscription_external_id,
                "service_period_start": format_timestamp(self.service_period_start),
                "service_period_end": format_timestamp(self.service_period_end),
            }
        body |= {
            "amount_in_cents": self.amount_in_cents,
            "quantity": self.quantity,
            "plan_uuid": self.plan_uuid,
        }
        body |= {key: self.echoed.get(key, default) for key, default in LINE_ITEM_ECHOED_DEFAULTS.items()}
        return body


@dataclass
class TransactionRecord:
    """A payment or refund attached to an invoice."""

    uuid: str
    external_id: str | None
    type: str
    date: datetime
    result: str
    amount_in_cents: int | None = None

    def to_api(self) -> dict[str, Any]:
        """The transaction object inside an invoice."""
        return {
            "uuid": self.uuid,
            "external_id": self.external_id,
            "amount_in_cents": self.amount_in_cents,
            "type": self.type,
            "date": format_timestamp(self.date),
            "result": self.result,
            "transaction_fees_in_cents": None,
            "transaction_fees_currency": None,
        }


@dataclass
class InvoiceRecord:
    """An imported invoice; ``customer_external_id`` names the source customer it belongs to."""

    uuid: str
    external_id: str
    data_source_uuid: str
    customer_uuid: str
    customer_external_id: str
    date: datetime
    currency: str
    due_date: datetime | None = None
    seq: int = 0  # creation order, the position cursors point at
    line_items: list[LineItemRecord] = field(default_factory=list)
    transactions: list[TransactionRecord] = field(default_factory=list)

    @property
    def owner(self) -> Identity:
        """The source customer this invoice was imported for."""
        return (self.data_source_uuid, self.customer_external_id)

    def to_api(self) -> dict[str, Any]:
        """The invoice object of the import answer and of ``GET /v1/invoices/{uuid}``."""
        return {
            "uuid": self.uuid,
            "external_id": self.external_id,
            "date": format_timestamp(self.date),
            "due_date": format_timestamp(self.due_date),
            "currency": self.currency,
            "customer_uuid": self.customer_uuid,
            "customer_external_id": self.customer_external_id,
            "data_source_uuid": self.data_source_uuid,
            "errors": {},
            "line_items": [line_item.to_api() for line_item in self.line_items],
            "transactions": [transaction.to_api() for transaction in self.transactions],
        }


@dataclass
class MergeRecord:
    """A requested merge (or unmerge, per ``kind``), applied once ``due_at`` (epoch seconds) passes."""

    id: str
    kind: str  # "merge" or "unmerge"
    customer_uuid: str  # merge: the "from" customer; unmerge: the customer to split
    due_at: float
    requested_at: datetime
    into_uuid: str | None = None  # merge only
    split_identity: Identity | None = None  # unmerge only
    status: str = "pending"  # pending, applied, failed
    detail: str = ""
    #: "api" (POST /v1/customers/merges or unmerges) or "chartmogul" (its own automation, or a person)
    requested_by: str = "api"

    def to_api(self) -> dict[str, Any]:
        """The merge as ``GET /_sandbox/state`` shows it."""
        body = dataclasses.asdict(self)
        body["requested_at"] = format_timestamp(self.requested_at)
        return body


@dataclass
class JsonImportRecord:
    """A bulk import; it is applied when ``due_at`` passes and ``payload`` is then dropped."""

    id: str
    data_source_uuid: str
    external_id: str | None
    created_at: datetime
    processing_at: float
    due_at: float
    payload: dict[str, Any] | None
    status_details: dict[str, Any] = field(default_factory=dict)
    completed_at: datetime | None = None

    def status_at(self, now: float) -> str:
        """``queued``, ``processing`` or ``completed`` at the epoch moment ``now``."""
        if self.completed_at is not None:
            return "completed"
        return "processing" if now >= self.processing_at else "queued"

    def to_api(self, now: float) -> dict[str, Any]:
        """The import object of ``POST``/``GET .../json_imports``."""
        return {
            "id": self.id,
            "data_source_uuid": self.data_source_uuid,
            "status": self.status_at(now),
            "external_id": self.external_id,
            "status_details": self.status_details,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.completed_at or self.created_at),
        }


def country_name(code: str | None) -> str | None:
    """The full country name the API shows in ``address.country`` ("DE" → "Germany"); unknown codes echo."""
    if not code:
        return code
    country = pycountry.countries.get(alpha_2=code.upper())
    return country.name if country is not None else code


def state_name(country_code: str | None, state: str | None) -> str | None:
    """The full subdivision name for ``address.state`` ("US", "CA" → "California"); unknown ones echo."""
    if not state or not country_code:
        return state
    code = state.upper() if "-" in state else f"{country_code.upper()}-{state.upper()}"
    subdivision = pycountry.subdivisions.get(code=code)
    return subdivision.name if subdivision is not None else state


def _url_slug(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip())


# -- state-file form -------------------------------------------------------------------------------

StoredRecord = DataSourceRecord | CustomerRecord | PlanRecord | InvoiceRecord | MergeRecord | JsonImportRecord
"""A record the state file holds at the top level (line items and transactions sit inside invoices)."""

RecordT = TypeVar("RecordT", bound=StoredRecord)


def to_storage(record: StoredRecord) -> dict[str, Any]:
    """A record (nested records included) as plain JSON values, timestamps in ISO form."""
    return _encode(dataclasses.asdict(record))


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def from_storage(record_type: type[RecordT], stored: dict[str, Any]) -> RecordT:
    """Rebuild a record written by `to_storage` (identities back to tuples, nested items to records)."""
    values = _decode(stored)
    if record_type is CustomerRecord:
        values["identities"] = [tuple(identity) for identity in values["identities"]]
    if record_type is InvoiceRecord:
        values["line_items"] = [LineItemRecord(**item) for item in values["line_items"]]
        values["transactions"] = [TransactionRecord(**item) for item in values["transactions"]]
    if record_type is MergeRecord and values.get("split_identity") is not None:
        values["split_identity"] = tuple(values["split_identity"])
    return record_type(**values)
