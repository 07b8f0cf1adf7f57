"""The customers of the sandbox account and their indexes.

Lookups go through indexes, never scans: by (data source, external id), by external id, by e-mail,
and sorted ids overall and per data source, so a list page is a bisect and a slice.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mogulflow_sandbox.api_errors import coded_error, customer_not_found, field_errors
from mogulflow_sandbox.data_sources import DataSourceStore
from mogulflow_sandbox.ids import new_uuid
from mogulflow_sandbox.pagination import Page, PageRequest, page_body, paginate
from mogulflow_sandbox.record_store import RecordStore
from mogulflow_sandbox.records import CustomerRecord, Identity, LineItemRecord
from mogulflow_sandbox.request_log import note_change
from mogulflow_sandbox.rules import (
    CUSTOMER_EXTERNAL_ID_TAKEN,
    CUSTOMER_NAME_REQUIRED,
    CustomerChanges,
    apply_lead_default_rule,
    check_lead_before_trial,
    is_blank,
    missing_customer_fields,
    read_customer_changes,
)
from mogulflow_sandbox.settings import Strictness
from mogulflow_sandbox.timestamps import utc_now

FIRST_CUSTOMER_ID = 1_000_001


class CustomerStore(RecordStore[CustomerRecord]):
    """The customers, each answering for one or (after merges) several source identities."""

    record_type = CustomerRecord

    def __init__(self, data_sources: DataSourceStore, strictness: Strictness) -> None:
        super().__init__()
        self._data_sources = data_sources
        self._strictness = strictness
        self._by_identity: dict[Identity, str] = {}
        self._by_external_id: dict[str, set[str]] = {}
        self._by_email: dict[str, set[str]] = {}
        self._by_website_domain: dict[str, set[str]] = {}
        # sorted customer ids, so a list page is a bisect and a slice, not a scan and a sort
        self._ids: list[int] = []
        self._ids_by_data_source: dict[str, list[int]] = {}
        self._uuid_by_id: dict[int, str] = {}
        #: the id the next customer gets (the state file keeps it, so ids never repeat)
        self.next_id = FIRST_CUSTOMER_ID

    # -- changes -----------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> CustomerRecord:
        """A new customer from a create body; 422 for missing fields, bad values or a taken external id."""
        data_source_uuid = body.get("data_source_uuid")
        missing = missing_customer_fields(body, self._data_sources.exists(data_source_uuid), self._strictness)
        if missing is not None:
            raise missing
        assert isinstance(data_source_uuid, str)
        changes = read_customer_changes(body, self._strictness, utc_now())
        identity = (data_source_uuid, str(body["external_id"]))
        if identity in self._by_identity:
            raise field_errors({"external_id": CUSTOMER_EXTERNAL_ID_TAKEN})
        customer = CustomerRecord(
            id=self.next_id,
            uuid=new_uuid("cus"),
            data_source_uuid=identity[0],
            external_id=identity[1],
            name=body.get("name") or "",
            created_at=utc_now(),
            identities=[identity],
        )
        self._apply_changes(customer, changes)
        self._add(customer)
        note_change("customer", identity[0], identity[1], "created")
        return customer

    def update(self, customer: CustomerRecord, body: dict[str, Any], *, refuse_blank_name: bool) -> None:
        """Change the fields present in ``body`` and re-apply the lead rule.

        ``refuse_blank_name``: the update endpoint refuses to blank a name; a JSON import does not.
        """
        changes = read_customer_changes(body, self._strictness, utc_now())
        if refuse_blank_name and "name" in changes.values and is_blank(changes.values["name"]):
            raise field_errors({"name": CUSTOMER_NAME_REQUIRED})
        with self.reindexing(customer):
            self._apply_changes(customer, changes)
        note_changes(customer, "updated")

    def _apply_changes(self, customer: CustomerRecord, changes: CustomerChanges) -> None:
        """Set the changed fields, then the lead default rule; checked before anything is written."""
        values = changes.values
        lead = values.get("lead_created_at", customer.lead_created_at)
        trial = values.get("free_trial_started_at", customer.free_trial_started_at)
        lead = apply_lead_default_rule(lead, trial)
        check_lead_before_trial(lead, trial, self._strictness)
        for name, value in values.items():
            if name in ("email", "company", "name"):
                value = value or ""
            setattr(customer, name, value)
        customer.lead_created_at = lead
        if changes.tags is not None:
            customer.tags = list(dict.fromkeys(changes.tags))
        if changes.custom is not None:
            for key, (kind, value) in changes.custom.items():
                customer.custom[key] = value
                customer.custom_types[key] = kind or customer.custom_types.get(key) or "String"

    @contextmanager
    def reindexing(self, customer: CustomerRecord) -> Iterator[CustomerRecord]:
        """Take the customer out of the indexes while it changes (identities, e-mail), then put it back."""
        self._unindex(customer)
        try:
            yield customer
        finally:
            self._index(customer)

    def keep_identities(self, customer: CustomerRecord, identities: list[Identity]) -> None:
        """Let ``customer`` answer only for ``identities``; the first becomes its own."""
        with self.reindexing(customer):
            customer.identities = identities
            customer.data_source_uuid, customer.external_id = identities[0]

    def split_off(self, customer: CustomerRecord, identity: Identity) -> CustomerRecord:
        """Give ``identity`` a new customer of its own with a copy of ``customer``'s profile (an unmerge)."""
        self.keep_identities(customer, [i for i in customer.identities if i != identity])
        split = dataclasses.replace(
            customer,
            id=self.next_id,
            uuid=new_uuid("cus"),
            data_source_uuid=identity[0],
            external_id=identity[1],
            identities=[identity],
            created_at=utc_now(),
            # copied, so a later change to one record does not show in the other
            tags=list(customer.tags),
            custom=dict(customer.custom),
            custom_types=dict(customer.custom_types),
        )
        self._add(split)
        return split

    def remove(self, customer: CustomerRecord) -> None:
        """Forget the customer (its invoices are the caller's to remove)."""
        self._unindex(customer)
        del self._records[customer.uuid]

    def _add(self, customer: CustomerRecord) -> None:
        self.next_id += 1
        self._keep(customer)

    def _keep(self, record: CustomerRecord) -> None:
        self._records[record.uuid] = record
        self._index(record)

    # -- lookups -----------------------------------------------------------------------------------

    def get(self, customer_uuid: str) -> CustomerRecord:
        """The customer; unknown (or merged away) → 404 family B."""
        return self._get(customer_uuid, lambda: customer_not_found(customer_uuid))

    def find_by_identity(self, identity: Identity) -> CustomerRecord | None:
        """The customer answering for (data source, external id), merged or not, or None."""
        customer_uuid = self._by_identity.get(identity)
        return self._records[customer_uuid] if customer_uuid else None

    def auto_merge_candidate(self, customer: CustomerRecord) -> CustomerRecord | None:
        """The oldest other customer ChartMogul's automation would merge ``customer`` into: one with the
        same external id in another data source, or the same website domain [UNVERIFIED which fields
        count as "domains"; e-mail domains are left out, free-mail providers would merge strangers]."""
        candidates: set[str] = set()
        for data_source_uuid, external_id in customer.identities:
            for other_uuid in self._by_external_id.get(external_id, ()):
                other = self._records[other_uuid]
                if any(source != data_source_uuid for source, ext in other.identities if ext == external_id):
                    candidates.add(other_uuid)
        domain = website_domain(customer.website_url)
        if domain:
            candidates |= self._by_website_domain.get(domain, set())
        candidates.discard(customer.uuid)
        return min((self._records[u] for u in candidates), key=lambda c: c.id, default=None)

    def in_data_source(self, data_source_uuid: str | None) -> list[CustomerRecord]:
        """Every customer (with an identity in the data source), by ascending id."""
        return [self._records[self._uuid_by_id[i]] for i in self._id_list(data_source_uuid)]

    def _id_list(self, data_source_uuid: str | None) -> list[int]:
        if data_source_uuid is None:
            return self._ids
        return self._ids_by_data_source.get(data_source_uuid, [])

    # -- API form ----------------------------------------------------------------------------------

    def render(self, customer: CustomerRecord) -> dict[str, Any]:
        """The customer in API form."""
        return customer.to_api(self._data_sources.billing_system(customer.data_source_uuid))

    def to_api(self) -> list[dict[str, Any]]:
        """Every customer in API form, in the order they were stored."""
        return [self.render(customer) for customer in self._records.values()]

    def list_page(
        self,
        request: PageRequest,
        data_source_uuid: str | None,
        external_id: str | None,
        status: str | None,
        system: str | None,
    ) -> dict[str, Any]:
        """``GET /v1/customers``: filtered, by ascending id, one cursor page in API form."""
        if external_id is None and status is None and system is None:
            # the common case pages the sorted ids directly, touching only the customers it returns
            id_page = paginate(self._id_list(data_source_uuid), int, request)
            customers = [self._records[self._uuid_by_id[i]] for i in id_page.items]
            return self._page_body(Page(customers, id_page.cursor, id_page.has_more, id_page.total), request)
        if data_source_uuid is not None and external_id is not None:
            found = self._by_identity.get((data_source_uuid, external_id))
            candidate_uuids: Iterable[str] = [found] if found else []
        elif external_id is not None:
            candidate_uuids = self._by_external_id.get(external_id, ())
        elif data_source_uuid is not None:
            candidate_uuids = [self._uuid_by_id[i] for i in self._id_list(data_source_uuid)]
        else:
            candidate_uuids = self._records
        candidates = sorted((self._records[u] for u in candidate_uuids), key=lambda customer: customer.id)
        if status is not None:
            candidates = [customer for customer in candidates if customer.status == status]
        if system is not None:
            candidates = [c for c in candidates if self._data_sources.has_system(c.data_source_uuid, system)]
        return self._page_body(paginate(candidates, lambda customer: customer.id, request), request)

    def search_page(self, email: str, request: PageRequest) -> dict[str, Any]:
        """``GET /v1/customers/search?email=``: exact (case-insensitive) match; none → 404 family B."""
        candidates = sorted(
            (self._records[u] for u in self._by_email.get(email.lower(), ())), key=lambda c: c.id
        )
        if not candidates:
            raise coded_error(404, f'Can\'t find any customers with email: "{email}"', "email")
        return self._page_body(paginate(candidates, lambda customer: customer.id, request), request)

    def _page_body(self, page: Page[CustomerRecord], request: PageRequest) -> dict[str, Any]:
        return page_body("entries", [self.render(c) for c in page.items], page, request)

    # -- indexes -----------------------------------------------------------------------------------

    def _index(self, customer: CustomerRecord) -> None:
        _insert_sorted(self._ids, customer.id)
        self._uuid_by_id[customer.id] = customer.uuid
        for identity in customer.identities:
            self._by_identity[identity] = customer.uuid
            self._by_external_id.setdefault(identity[1], set()).add(customer.uuid)
            _insert_sorted(self._ids_by_data_source.setdefault(identity[0], []), customer.id)
        if customer.email:
            self._by_email.setdefault(customer.email.lower(), set()).add(customer.uuid)
        domain = website_domain(customer.website_url)
        if domain:
            self._by_website_domain.setdefault(domain, set()).add(customer.uuid)

    def _unindex(self, customer: CustomerRecord) -> None:
        for identity in customer.identities:
            # after a merge the identity may already answer for the surviving customer
            if self._by_identity.get(identity) == customer.uuid:
                del self._by_identity[identity]
            self._by_external_id.get(identity[1], set()).discard(customer.uuid)
            _remove_sorted(self._ids_by_data_source.get(identity[0], []), customer.id)
        _remove_sorted(self._ids, customer.id)
        self._uuid_by_id.pop(customer.id, None)
        if customer.email:
            self._by_email.get(customer.email.lower(), set()).discard(customer.uuid)
        domain = website_domain(customer.website_url)
        if domain:
            self._by_website_domain.get(domain, set()).discard(customer.uuid)


def website_domain(url: str | None) -> str | None:
    """``https://www.Example.com/pricing`` → ``example.com``; None without a host."""
    if not url or not url.strip():
        return None
    text = url.strip().lower()
    host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    return host.removeprefix("www.") or None


def note_changes(customer: CustomerRecord, change: str) -> None:
    """Record a change of the customer under each identity it answers for (the request log's view)."""
    for data_source_uuid, external_id in customer.identities:
        note_change("customer", data_source_uuid, external_id, change)


def apply_paid_status(customer: CustomerRecord, line_items: list[LineItemRecord]) -> None:
    """A paid subscription line item makes a lead "Active" (no MRR maths: statuses only)."""
    paid_starts = [
        item.service_period_start
        for item in line_items
        if item.type == "subscription" and item.amount_in_cents > 0 and item.service_period_start is not None
    ]
    if paid_starts:
        customer.status = "Active"
        customer.customer_since = earliest(customer.customer_since, min(paid_starts))


def earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    """The earlier of two optional moments (None when both are missing)."""
    present = [moment for moment in (first, second) if moment is not None]
    return min(present) if present else None


def _insert_sorted(ids: list[int], customer_id: int) -> None:
    """Add an id to a sorted list once (new ids are the largest, so this is mostly an append)."""
    position = bisect.bisect_left(ids, customer_id)
    if position == len(ids) or ids[position] != customer_id:
        ids.insert(position, customer_id)


def _remove_sorted(ids: list[int], customer_id: int) -> None:
    position = bisect.bisect_left(ids, customer_id)
    if position < len(ids) and ids[position] == customer_id:
        del ids[position]
