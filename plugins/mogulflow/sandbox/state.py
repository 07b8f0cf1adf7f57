"""The sandbox's ChartMogul account: data sources, customers, plans, invoices, merges, bulk imports.

`SandboxState` is thread-safe (one re-entrant lock around every public method) and answers in
API form (plain JSON dicts), so the HTTP routes and tests read the same thing. Lookups go through
indexes, never scans: customers by (data source, external id), by external id, by e-mail, by data
source; plans, invoices, line items and transactions by (data source, external id).

Asynchronous work (merges, unmerges, JSON imports) is queued with a due time and applied by the
first call that finds it due, so nothing needs a timer thread and the outcome is the same as the
real API's: the 202 comes first, the effect shows up a moment later.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from mogulflow.sandbox import bulk
from mogulflow.sandbox.api_errors import (
    DATA_SOURCE_NOT_FOUND_MESSAGE,
    INVOICE_NOT_FOUND_MESSAGE,
    PLAN_NOT_FOUND_MESSAGE,
    bare_error,
    coded_error,
    customer_not_found,
    detailed_error,
    field_errors,
    missing_parameter,
)
from mogulflow.sandbox.pagination import Page, PageRequest, page_body, paginate
from mogulflow.sandbox.records import (
    CustomerRecord,
    DataSourceRecord,
    Identity,
    InvoiceRecord,
    JsonImportRecord,
    LineItemRecord,
    MergeRecord,
    PlanRecord,
    TransactionRecord,
    from_storage,
    to_storage,
)
from mogulflow.sandbox.rules import (
    CUSTOMER_EXTERNAL_ID_TAKEN,
    INVOICE_EXTERNAL_ID_TAKEN,
    LINE_ITEM_EXTERNAL_ID_TAKEN,
    PLAN_EXTERNAL_ID_TAKEN,
    TRANSACTION_EXTERNAL_ID_TAKEN,
    CustomerChanges,
    InvoiceDraft,
    LineItemDraft,
    apply_lead_default_rule,
    check_lead_before_trial,
    is_blank,
    missing_customer_fields,
    plan_field_errors,
    read_customer_changes,
    read_invoice,
    read_line_item,
)
from mogulflow.sandbox.settings import SandboxSettings
from mogulflow.sandbox.timestamps import utc_now

P = ParamSpec("P")
R = TypeVar("R")

FIRST_CUSTOMER_ID = 1_000_001
MERGED_PROFILE_FIELDS = ("email", "company", "country", "state", "city", "zip", "owner", "website_url")
STORAGE_FORMAT = 1


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """Run a public state method under the lock, after applying any async work that has fallen due."""

    @functools.wraps(method)
    def run_locked(*args: P.args, **kwargs: P.kwargs) -> R:
        state = args[0]
        assert isinstance(state, SandboxState)
        with state._lock:
            state._apply_due_work()
            return method(*args, **kwargs)

    return run_locked


def _new_uuid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4()}"


class SandboxState:
    """The live account of one sandbox. Public methods answer in API form and raise `ApiError`."""

    def __init__(
        self, settings: SandboxSettings | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self.settings = settings or SandboxSettings()
        #: grows with every change; the state file is written when it moved
        self.version = 0
        self._clear()

    def _clear(self) -> None:
        self._data_sources: dict[str, DataSourceRecord] = {}
        self._customers: dict[str, CustomerRecord] = {}
        self._customer_by_identity: dict[Identity, str] = {}
        self._customers_by_external_id: dict[str, set[str]] = {}
        self._customers_by_email: dict[str, set[str]] = {}
        # sorted customer ids, so a list page is a bisect and a slice, not a scan and a sort
        self._customer_ids: list[int] = []
        self._customer_ids_by_data_source: dict[str, list[int]] = {}
        self._customer_uuid_by_id: dict[int, str] = {}
        self._plans: dict[str, PlanRecord] = {}
        self._plan_by_external_id: dict[Identity, str] = {}
        self._invoices: dict[str, InvoiceRecord] = {}
        self._invoice_by_external_id: dict[Identity, str] = {}
        self._invoices_by_customer: dict[str, dict[str, None]] = {}
        self._line_item_by_external_id: dict[Identity, str] = {}
        self._transaction_by_external_id: dict[Identity, str] = {}
        self._subscription_uuids: dict[Identity, str] = {}
        self._merges: dict[str, MergeRecord] = {}
        self._json_imports: dict[str, JsonImportRecord] = {}
        self._json_import_by_external_id: dict[Identity, str] = {}
        self._due_work: list[tuple[float, int, str, str]] = []
        self._due_counter = itertools.count()
        self._next_customer_id = FIRST_CUSTOMER_ID
        self._next_seq = 1

    def _changed(self) -> None:
        self.version += 1

    def _now(self) -> datetime:
        return utc_now()

    # -- data sources ------------------------------------------------------------------------------

    @_locked
    def create_data_source(self, name: object, system: str = "Custom") -> dict[str, Any]:
        """``POST /v1/data_sources``: 400 without a name, 422 "Has already been taken." for a taken one."""
        if is_blank(name):
            raise missing_parameter("name")
        if not isinstance(name, str):
            raise field_errors({"name": "must be a string"})
        if any(source.name == name for source in self._data_sources.values()):
            raise field_errors({"name": "Has already been taken."})
        record = DataSourceRecord(uuid=_new_uuid("ds"), name=name, system=system, created_at=self._now())
        self._data_sources[record.uuid] = record
        self._changed()
        return record.to_api()

    @_locked
    def list_data_sources(self, name: str | None = None, system: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/data_sources``: every data source, filtered by exact ``name``/``system`` when given."""
        return [
            source.to_api()
            for source in self._data_sources.values()
            if (name is None or source.name == name) and (system is None or source.system == system)
        ]

    @_locked
    def get_data_source(self, data_source_uuid: str) -> dict[str, Any]:
        """``GET /v1/data_sources/{uuid}``; unknown → 404 ``{"error": "Data source not found"}``."""
        return self._data_source(data_source_uuid).to_api()

    @_locked
    def data_source_by_name(self, name: str) -> dict[str, Any] | None:
        """The data source called ``name``, or None (test helper)."""
        return next((source.to_api() for source in self._data_sources.values() if source.name == name), None)

    @_locked
    def delete_data_source(self, data_source_uuid: str) -> None:
        """``DELETE /v1/data_sources/{uuid}``: the source goes with its plans, invoices and own customers."""
        self._data_source(data_source_uuid)
        for invoice in [i for i in self._invoices.values() if i.data_source_uuid == data_source_uuid]:
            self._drop_invoice(invoice)
        for plan in [p for p in self._plans.values() if p.data_source_uuid == data_source_uuid]:
            self._drop_plan(plan)
        for customer_id in list(self._customer_ids_by_data_source.get(data_source_uuid, ())):
            customer = self._customers[self._customer_uuid_by_id[customer_id]]
            remaining = [identity for identity in customer.identities if identity[0] != data_source_uuid]
            if remaining:
                self._unindex_customer(customer)
                customer.identities = remaining
                customer.data_source_uuid, customer.external_id = remaining[0]
                self._index_customer(customer)
            else:
                self._drop_customer(customer)
        del self._data_sources[data_source_uuid]
        self._changed()

    def _data_source(self, data_source_uuid: str) -> DataSourceRecord:
        source = self._data_sources.get(data_source_uuid)
        if source is None:
            raise bare_error(404, DATA_SOURCE_NOT_FOUND_MESSAGE)
        return source

    # -- customers ---------------------------------------------------------------------------------

    @_locked
    def create_customer_from_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/customers``: 201 body, or 422 for missing fields, bad values or a taken external id."""
        return self._render_customer(self._create_customer(body))

    def _create_customer(self, body: dict[str, Any]) -> CustomerRecord:
        strictness = self.settings.strictness
        data_source_uuid = body.get("data_source_uuid")
        data_source_known = isinstance(data_source_uuid, str) and data_source_uuid in self._data_sources
        missing = missing_customer_fields(body, data_source_known, strictness)
        if missing is not None:
            raise missing
        assert isinstance(data_source_uuid, str)
        changes = read_customer_changes(body, strictness, self._now())
        identity = (data_source_uuid, str(body["external_id"]))
        if identity in self._customer_by_identity:
            raise field_errors({"external_id": CUSTOMER_EXTERNAL_ID_TAKEN})
        customer = CustomerRecord(
            id=self._next_customer_id,
            uuid=_new_uuid("cus"),
            data_source_uuid=identity[0],
            external_id=identity[1],
            name=body.get("name") or "",
            created_at=self._now(),
            identities=[identity],
        )
        self._apply_customer_changes(customer, changes)
        self._next_customer_id += 1
        self._customers[customer.uuid] = customer
        self._index_customer(customer)
        self._changed()
        return customer

    def create_customer(
        self,
        *,
        data_source_uuid: str,
        external_id: str,
        name: str = "Paying customer",
        status: str | None = None,
        **profile: Any,
    ) -> dict[str, Any]:
        """Make a customer appear, as a billing integration would (test helper; same rules as the API).

        ``status`` (e.g. "Active") overrides the computed one.
        """
        body = {"data_source_uuid": data_source_uuid, "external_id": external_id, "name": name, **profile}
        with self._lock:
            self._apply_due_work()
            customer = self._create_customer(body)
            if status is not None:
                customer.status = status
            return self._render_customer(customer)

    @_locked
    def update_customer(self, customer_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PATCH``/``PUT /v1/customers/{uuid}``: change the fields present, re-apply the lead rule, 200."""
        customer = self._customer(customer_uuid)
        changes = read_customer_changes(body, self.settings.strictness, self._now())
        if "name" in changes.values and is_blank(changes.values["name"]):
            raise field_errors({"name": "A name is required for each customer."})
        self._unindex_customer(customer)
        try:
            self._apply_customer_changes(customer, changes)
        finally:
            self._index_customer(customer)
        self._changed()
        return self._render_customer(customer)

    def _apply_customer_changes(self, customer: CustomerRecord, changes: CustomerChanges) -> None:
        """Set the changed fields, then the lead default rule; checked before anything is written."""
        values = changes.values
        lead = values.get("lead_created_at", customer.lead_created_at)
        trial = values.get("free_trial_started_at", customer.free_trial_started_at)
        lead = apply_lead_default_rule(lead, trial)
        check_lead_before_trial(lead, trial, self.settings.strictness)
        for name, value in values.items():
            if name in ("email", "company", "name"):
                value = value or ""
            setattr(customer, name, value)
        customer.lead_created_at = lead
        if changes.tags is not None:
            customer.tags = changes.tags
        if changes.custom is not None:
            customer.custom = {**customer.custom, **changes.custom}

    @_locked
    def get_customer(self, customer_uuid: str) -> dict[str, Any]:
        """``GET /v1/customers/{uuid}``; unknown (or merged away) → 404 family B."""
        return self._render_customer(self._customer(customer_uuid))

    @_locked
    def delete_customer(self, customer_uuid: str) -> None:
        """``DELETE /v1/customers/{uuid}``: the customer and its invoices go; 204."""
        self._drop_customer(self._customer(customer_uuid))
        self._changed()

    @_locked
    def list_customers_page(
        self,
        request: PageRequest,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        status: str | None = None,
        system: str | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/customers``: filtered, by ascending id, one cursor page in API form."""
        if external_id is None and status is None and system is None:
            ids = (
                self._customer_ids
                if data_source_uuid is None
                else self._customer_ids_by_data_source.get(data_source_uuid, [])
            )
            id_page = paginate(ids, int, request)
            customers = [self._customers[self._customer_uuid_by_id[i]] for i in id_page.items]
            page = Page(customers, id_page.cursor, id_page.has_more, id_page.total)
            return self._customer_page_body(page, request)
        if data_source_uuid is not None and external_id is not None:
            found = self._customer_by_identity.get((data_source_uuid, external_id))
            candidate_uuids: Iterable[str] = [found] if found else []
        elif external_id is not None:
            candidate_uuids = self._customers_by_external_id.get(external_id, ())
        elif data_source_uuid is not None:
            ids = self._customer_ids_by_data_source.get(data_source_uuid, [])
            candidate_uuids = [self._customer_uuid_by_id[i] for i in ids]
        else:
            candidate_uuids = self._customers
        candidates = sorted((self._customers[u] for u in candidate_uuids), key=lambda customer: customer.id)
        if status is not None:
            candidates = [customer for customer in candidates if customer.status == status]
        if system is not None:
            candidates = [c for c in candidates if self._data_sources[c.data_source_uuid].system == system]
        page = paginate(candidates, lambda customer: customer.id, request)
        return self._customer_page_body(page, request)

    @_locked
    def search_customers_page(self, email: str, request: PageRequest) -> dict[str, Any]:
        """``GET /v1/customers/search?email=``: exact (case-insensitive) match; none → 404 family B."""
        candidates = sorted(
            (self._customers[u] for u in self._customers_by_email.get(email.lower(), ())), key=lambda c: c.id
        )
        if not candidates:
            raise coded_error(404, f'Can\'t find any customers with email: "{email}"', "email")
        return self._customer_page_body(paginate(candidates, lambda customer: customer.id, request), request)

    def _customer_page_body(self, page: Page[CustomerRecord], request: PageRequest) -> dict[str, Any]:
        return page_body("entries", [self._render_customer(c) for c in page.items], page, request)

    @_locked
    def customers(self, data_source_uuid: str | None = None) -> list[dict[str, Any]]:
        """Every customer (of one data source, merged ones included), in API form (test helper)."""
        ids = (
            self._customer_ids
            if data_source_uuid is None
            else self._customer_ids_by_data_source.get(data_source_uuid, [])
        )
        return [self._render_customer(self._customers[self._customer_uuid_by_id[i]]) for i in ids]

    @_locked
    def find_customer(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The customer answering for (data source, external id), merged or not, or None (test helper)."""
        customer_uuid = self._customer_by_identity.get((data_source_uuid, external_id))
        return self._render_customer(self._customers[customer_uuid]) if customer_uuid else None

    def _customer(self, customer_uuid: str) -> CustomerRecord:
        customer = self._customers.get(customer_uuid)
        if customer is None:
            raise customer_not_found(customer_uuid)
        return customer

    def _render_customer(self, customer: CustomerRecord) -> dict[str, Any]:
        source = self._data_sources.get(customer.data_source_uuid)
        return customer.to_api(source.system if source is not None else "Custom")

    def _index_customer(self, customer: CustomerRecord) -> None:
        _insert_sorted(self._customer_ids, customer.id)
        self._customer_uuid_by_id[customer.id] = customer.uuid
        for identity in customer.identities:
            self._customer_by_identity[identity] = customer.uuid
            self._customers_by_external_id.setdefault(identity[1], set()).add(customer.uuid)
            _insert_sorted(self._customer_ids_by_data_source.setdefault(identity[0], []), customer.id)
        if customer.email:
            self._customers_by_email.setdefault(customer.email.lower(), set()).add(customer.uuid)

    def _unindex_customer(self, customer: CustomerRecord) -> None:
        for identity in customer.identities:
            if self._customer_by_identity.get(identity) == customer.uuid:
                del self._customer_by_identity[identity]
            self._customers_by_external_id.get(identity[1], set()).discard(customer.uuid)
            _remove_sorted(self._customer_ids_by_data_source.get(identity[0], []), customer.id)
        _remove_sorted(self._customer_ids, customer.id)
        self._customer_uuid_by_id.pop(customer.id, None)
        if customer.email:
            self._customers_by_email.get(customer.email.lower(), set()).discard(customer.uuid)

    def _drop_customer(self, customer: CustomerRecord) -> None:
        for invoice_uuid in list(self._invoices_by_customer.get(customer.uuid, ())):
            self._drop_invoice(self._invoices[invoice_uuid])
        self._unindex_customer(customer)
        self._invoices_by_customer.pop(customer.uuid, None)
        del self._customers[customer.uuid]

    # -- merges ------------------------------------------------------------------------------------

    @_locked
    def request_merge(self, body: dict[str, Any]) -> None:
        """``POST /v1/customers/merges``: resolve both sides now, apply after the merge delay (202 ``{}``).

        Each side is ``{"customer_uuid"}`` or ``{"data_source_uuid", "external_id"}``; an unknown side
        is a 404 family B [UNVERIFIED: the real API may accept and fail later], merging a customer
        into itself a 422.
        """
        source = self._resolve_merge_side(body, "from")
        target = self._resolve_merge_side(body, "into")
        if source.uuid == target.uuid:
            raise coded_error(422, "A customer cannot be merged into itself.", "into")
        merge = MergeRecord(
            id=str(uuid.uuid4()),
            kind="merge",
            customer_uuid=source.uuid,
            into_uuid=target.uuid,
            due_at=self._clock() + self.settings.merge_delay_seconds,
            requested_at=self._now(),
        )
        self._queue(merge)

    @_locked
    def request_unmerge(self, body: dict[str, Any]) -> None:
        """``POST /v1/customers/unmerges``: split (data source, external id) off a merged customer later."""
        for name in ("customer_uuid", "data_source_uuid", "external_id"):
            if is_blank(body.get(name)):
                raise missing_parameter(name)
        customer = self._customer(str(body["customer_uuid"]))
        identity = (str(body["data_source_uuid"]), str(body["external_id"]))
        if identity not in customer.identities or len(customer.identities) < 2:
            raise coded_error(422, "Only previously merged customers can be unmerged.", "external_id")
        unmerge = MergeRecord(
            id=str(uuid.uuid4()),
            kind="unmerge",
            customer_uuid=customer.uuid,
            split_identity=identity,
            due_at=self._clock() + self.settings.merge_delay_seconds,
            requested_at=self._now(),
        )
        self._queue(unmerge)

    @_locked
    def merges(self) -> list[dict[str, Any]]:
        """Every merge and unmerge asked for, with its status (test helper)."""
        return [merge.to_api() for merge in self._merges.values()]

    def _queue(self, merge: MergeRecord) -> None:
        self._merges[merge.id] = merge
        heapq.heappush(self._due_work, (merge.due_at, next(self._due_counter), "merge", merge.id))
        self._changed()

    def _resolve_merge_side(self, body: dict[str, Any], side: str) -> CustomerRecord:
        reference = body.get(side)
        if not isinstance(reference, dict):
            raise missing_parameter(side)
        if reference.get("customer_uuid"):
            customer = self._customers.get(str(reference["customer_uuid"]))
        elif reference.get("data_source_uuid") and reference.get("external_id"):
            identity = (str(reference["data_source_uuid"]), str(reference["external_id"]))
            customer_uuid = self._customer_by_identity.get(identity)
            customer = self._customers.get(customer_uuid) if customer_uuid else None
        else:
            raise coded_error(
                400, f'Parameter "{side}" needs customer_uuid or data_source_uuid and external_id', side
            )
        if customer is None:
            raise coded_error(404, f'The "{side}" customer does not exist', side)
        return customer

    def _apply_merge(self, merge: MergeRecord) -> None:
        """Fold the "from" customer into "into" [UNVERIFIED which profile wins]: earliest lead and trial
        dates, "into"'s other fields unless empty; identities and invoices move; "from" disappears."""
        source = self._customers.get(merge.customer_uuid)
        target = self._customers.get(merge.into_uuid or "")
        if source is None or target is None:
            merge.status, merge.detail = "failed", "a customer was deleted or merged before the merge applied"
            return
        self._unindex_customer(source)
        self._unindex_customer(target)
        target.lead_created_at = _earliest(target.lead_created_at, source.lead_created_at)
        target.free_trial_started_at = _earliest(target.free_trial_started_at, source.free_trial_started_at)
        for name in MERGED_PROFILE_FIELDS:
            if not getattr(target, name):
                setattr(target, name, getattr(source, name))
        target.tags = list(dict.fromkeys(target.tags + source.tags))
        target.custom = {**source.custom, **target.custom}
        if target.status.endswith("Lead") and not source.status.endswith("Lead"):
            target.status, target.customer_since = source.status, source.customer_since
        target.identities = target.identities + [i for i in source.identities if i not in target.identities]
        for invoice_uuid in self._invoices_by_customer.pop(source.uuid, {}):
            self._invoices[invoice_uuid].customer_uuid = target.uuid
            self._invoices_by_customer.setdefault(target.uuid, {})[invoice_uuid] = None
        del self._customers[source.uuid]
        self._index_customer(target)
        merge.status = "applied"

    def _apply_unmerge(self, unmerge: MergeRecord) -> None:
        """Split one identity off into a new customer with a copy of the profile; its invoices follow."""
        customer = self._customers.get(unmerge.customer_uuid)
        identity = unmerge.split_identity
        if (
            customer is None
            or identity is None
            or identity not in customer.identities
            or len(customer.identities) < 2
        ):
            unmerge.status, unmerge.detail = "failed", "the customer changed before the unmerge applied"
            return
        self._unindex_customer(customer)
        customer.identities = [i for i in customer.identities if i != identity]
        customer.data_source_uuid, customer.external_id = customer.identities[0]
        split = CustomerRecord(
            **{
                **to_profile_copy(customer),
                "id": self._next_customer_id,
                "uuid": _new_uuid("cus"),
                "data_source_uuid": identity[0],
                "external_id": identity[1],
                "identities": [identity],
                "created_at": self._now(),
            }
        )
        self._next_customer_id += 1
        self._customers[split.uuid] = split
        for invoice_uuid in list(self._invoices_by_customer.get(customer.uuid, ())):
            invoice = self._invoices[invoice_uuid]
            if invoice.owner == identity:
                invoice.customer_uuid = split.uuid
                del self._invoices_by_customer[customer.uuid][invoice_uuid]
                self._invoices_by_customer.setdefault(split.uuid, {})[invoice_uuid] = None
        self._index_customer(customer)
        self._index_customer(split)
        unmerge.status = "applied"

    # -- plans -------------------------------------------------------------------------------------

    @_locked
    def create_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/plans``: 201, 422 family A for bad fields or a taken external id."""
        return self._create_plan(body).to_api()

    def _create_plan(self, body: dict[str, Any]) -> PlanRecord:
        data_source_uuid = body.get("data_source_uuid")
        errors = plan_field_errors(
            body, isinstance(data_source_uuid, str) and data_source_uuid in self._data_sources
        )
        if errors:
            raise field_errors(errors)
        assert isinstance(data_source_uuid, str)
        external_id = body.get("external_id")
        if is_blank(external_id):
            external_id = str(uuid.uuid4())  # the API generates one when none is given
        if (data_source_uuid, external_id) in self._plan_by_external_id:
            raise field_errors({"external_id": PLAN_EXTERNAL_ID_TAKEN})
        plan = PlanRecord(
            uuid=_new_uuid("pl"),
            data_source_uuid=data_source_uuid,
            external_id=str(external_id),
            name=body["name"],
            interval_count=body["interval_count"],
            interval_unit=body["interval_unit"],
            seq=self._take_seq(),
        )
        self._plans[plan.uuid] = plan
        self._plan_by_external_id[(data_source_uuid, plan.external_id)] = plan.uuid
        self._changed()
        return plan

    @_locked
    def update_plan(self, plan_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PATCH /v1/plans/{uuid}``: name and interval only; the route answers 202 with the plan."""
        plan = self._plan(plan_uuid)
        errors = plan_field_errors(body, True, partial=True)
        if errors:
            raise field_errors(errors)
        for name in ("name", "interval_count", "interval_unit"):
            if name in body:
                setattr(plan, name, body[name])
        self._changed()
        return plan.to_api()

    @_locked
    def get_plan(self, plan_uuid: str) -> dict[str, Any]:
        """``GET /v1/plans/{uuid}``; unknown → 404 ``{"error": "Plan not found"}``."""
        return self._plan(plan_uuid).to_api()

    @_locked
    def delete_plan(self, plan_uuid: str) -> None:
        """``DELETE /v1/plans/{uuid}``: 204."""
        self._drop_plan(self._plan(plan_uuid))
        self._changed()

    @_locked
    def list_plans_page(
        self,
        request: PageRequest,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        system: str | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/plans``: filtered, in creation order, one cursor page under ``plans``."""
        if data_source_uuid is not None and external_id is not None:
            found = self._plan_by_external_id.get((data_source_uuid, external_id))
            candidates = [self._plans[found]] if found else []
        else:
            candidates = [
                plan
                for plan in self._plans.values()
                if (data_source_uuid is None or plan.data_source_uuid == data_source_uuid)
                and (external_id is None or plan.external_id == external_id)
            ]
        if system is not None:
            candidates = [p for p in candidates if self._data_sources[p.data_source_uuid].system == system]
        page = paginate(candidates, lambda plan: plan.seq, request)
        return page_body("plans", [plan.to_api() for plan in page.items], page, request)

    @_locked
    def plans(self, data_source_uuid: str | None = None) -> list[dict[str, Any]]:
        """Every plan (of one data source) in API form (test helper)."""
        return [p.to_api() for p in self._plans.values() if data_source_uuid in (None, p.data_source_uuid)]

    def _plan(self, plan_uuid: str) -> PlanRecord:
        plan = self._plans.get(plan_uuid)
        if plan is None:
            raise bare_error(404, PLAN_NOT_FOUND_MESSAGE)
        return plan

    def _drop_plan(self, plan: PlanRecord) -> None:
        del self._plans[plan.uuid]
        self._plan_by_external_id.pop((plan.data_source_uuid, plan.external_id), None)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # -- invoices ----------------------------------------------------------------------------------

    @_locked
    def import_invoices(self, customer_uuid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/import/customers/{uuid}/invoices`` → (status, body).

        201 with every stored invoice; 422 family F listing each invoice with its ``errors`` when one
        fails. ``invoice_batch_mode`` [UNVERIFIED] decides whether the good ones of a failing batch are
        stored (``partial``; they then appear in full in the 422 body) or not (``all_or_nothing``).
        An unknown customer uuid answers the misleading 404 the real API gives.
        """
        customer = self._customers.get(customer_uuid)
        if customer is None:
            raise detailed_error(404, INVOICE_NOT_FOUND_MESSAGE, "invoice")
        raw_invoices = body.get("invoices")
        if not isinstance(raw_invoices, list):
            raise missing_parameter("invoices")
        drafts = self._check_invoice_batch(customer, raw_invoices)
        if all(not draft.errors for draft in drafts):
            stored = [self._store_invoice(customer, draft) for draft in drafts]
            self._changed()
            return 201, {"invoices": [invoice.to_api() for invoice in stored]}
        answers: list[dict[str, Any]] = []
        for draft in drafts:
            if not draft.errors and self.settings.invoice_batch_mode == "partial":
                answers.append(self._store_invoice(customer, draft).to_api())
            else:
                answers.append({"external_id": draft.external_id, "errors": draft.errors})
        self._changed()
        return 422, {"invoices": answers}

    def _check_invoice_batch(self, customer: CustomerRecord, raw_invoices: list[Any]) -> list[InvoiceDraft]:
        """Read each invoice, then add owner and duplicate errors (against the store and the batch)."""
        drafts: list[InvoiceDraft] = []
        batch_invoices: set[Identity] = set()
        batch_line_items: set[Identity] = set()
        batch_transactions: set[Identity] = set()
        for raw in raw_invoices:
            owner, owner_error = self._invoice_owner(customer, raw)
            draft = read_invoice(raw, owner[0], self._plans.get, self.settings.strictness, self._now())
            errors = dict(draft.errors)
            if owner_error:
                errors.setdefault("customer_external_id", owner_error)
            if draft.external_id is not None:
                key = (owner[0], draft.external_id)
                if key in self._invoice_by_external_id or key in batch_invoices:
                    errors.setdefault("external_id", INVOICE_EXTERNAL_ID_TAKEN)
                batch_invoices.add(key)
            for line_item in draft.line_items:
                if line_item.external_id is not None:
                    key = (owner[0], line_item.external_id)
                    if key in self._line_item_by_external_id or key in batch_line_items:
                        errors.setdefault("line_items.external_id", LINE_ITEM_EXTERNAL_ID_TAKEN)
                    batch_line_items.add(key)
            for transaction in draft.transactions:
                if transaction.external_id is not None:
                    key = (owner[0], transaction.external_id)
                    if key in self._transaction_by_external_id or key in batch_transactions:
                        errors.setdefault("transactions.external_id", TRANSACTION_EXTERNAL_ID_TAKEN)
                    batch_transactions.add(key)
            drafts.append(_with_errors(draft, errors, owner))
        return drafts

    def _invoice_owner(self, customer: CustomerRecord, raw: object) -> tuple[Identity, str | None]:
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

    def _store_invoice(self, customer: CustomerRecord, draft: InvoiceDraft) -> InvoiceRecord:
        assert draft.date is not None and draft.external_id is not None and draft.data_source_uuid is not None
        data_source_uuid = draft.data_source_uuid
        invoice = InvoiceRecord(
            uuid=_new_uuid("inv"),
            external_id=draft.external_id,
            data_source_uuid=data_source_uuid,
            customer_uuid=customer.uuid,
            customer_external_id=draft.customer_external_id or "",
            date=draft.date,
            currency=draft.currency,
            due_date=draft.due_date,
            seq=self._take_seq(),
            line_items=[self._new_line_item(data_source_uuid, item) for item in draft.line_items],
            transactions=[
                TransactionRecord(
                    uuid=_new_uuid("tr"),
                    external_id=t.external_id,
                    type=t.type,
                    date=t.date,
                    result=t.result,
                    amount_in_cents=t.amount_in_cents,
                )
                for t in draft.transactions
            ],
        )
        self._index_invoice(invoice)
        self._update_customer_status(customer, invoice.line_items)
        return invoice

    def _new_line_item(self, data_source_uuid: str, draft: LineItemDraft) -> LineItemRecord:
        subscription_uuid = None
        if draft.subscription_external_id is not None:
            key = (data_source_uuid, draft.subscription_external_id)
            subscription_uuid = self._subscription_uuids.setdefault(key, _new_uuid("sub"))
        return LineItemRecord(
            uuid=_new_uuid("li"),
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

    def _update_customer_status(self, customer: CustomerRecord, line_items: list[LineItemRecord]) -> None:
        """A paid subscription line item makes a lead "Active" (no MRR maths: statuses only)."""
        paid_starts = [
            item.service_period_start
            for item in line_items
            if item.type == "subscription"
            and item.amount_in_cents > 0
            and item.service_period_start is not None
        ]
        if paid_starts:
            customer.status = "Active"
            customer.customer_since = _earliest(customer.customer_since, min(paid_starts))

    def _index_invoice(self, invoice: InvoiceRecord) -> None:
        self._invoices[invoice.uuid] = invoice
        self._invoice_by_external_id[(invoice.data_source_uuid, invoice.external_id)] = invoice.uuid
        self._invoices_by_customer.setdefault(invoice.customer_uuid, {})[invoice.uuid] = None
        for item in invoice.line_items:
            if item.external_id is not None:
                self._line_item_by_external_id[(invoice.data_source_uuid, item.external_id)] = item.uuid
        for transaction in invoice.transactions:
            if transaction.external_id is not None:
                self._transaction_by_external_id[(invoice.data_source_uuid, transaction.external_id)] = (
                    transaction.uuid
                )

    def _drop_invoice(self, invoice: InvoiceRecord) -> None:
        del self._invoices[invoice.uuid]
        self._invoice_by_external_id.pop((invoice.data_source_uuid, invoice.external_id), None)
        self._invoices_by_customer.get(invoice.customer_uuid, {}).pop(invoice.uuid, None)
        for item in invoice.line_items:
            self._line_item_by_external_id.pop((invoice.data_source_uuid, item.external_id or ""), None)
        for transaction in invoice.transactions:
            self._transaction_by_external_id.pop(
                (invoice.data_source_uuid, transaction.external_id or ""), None
            )

    @_locked
    def add_line_item(self, invoice_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/import/invoices/{uuid}/line_items``: 201 line item; 404 family C; 422 family A."""
        invoice = self._invoice(invoice_uuid)
        errors, draft = read_line_item(body, invoice.data_source_uuid, self._plans.get)
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
        if item.external_id is not None:
            self._line_item_by_external_id[(invoice.data_source_uuid, item.external_id)] = item.uuid
        self._update_customer_status(self._customers[invoice.customer_uuid], [item])
        self._changed()
        return item.to_api()

    @_locked
    def get_invoice(self, invoice_uuid: str) -> dict[str, Any]:
        """``GET /v1/invoices/{uuid}``: 422 family D for a malformed uuid, 404 family C for an unknown one."""
        return self._invoice(invoice_uuid).to_api()

    @_locked
    def delete_invoice(self, invoice_uuid: str) -> None:
        """``DELETE /v1/invoices/{uuid}``: 204; malformed uuid 422 family D; unknown 404 family C."""
        self._drop_invoice(self._invoice(invoice_uuid))
        self._changed()

    def _invoice(self, invoice_uuid: str) -> InvoiceRecord:
        if not _is_prefixed_uuid(invoice_uuid, "inv"):
            raise detailed_error(422, "Invalid UUID passed", "uuid")
        invoice = self._invoices.get(invoice_uuid)
        if invoice is None:
            raise bare_error(404, INVOICE_NOT_FOUND_MESSAGE)
        return invoice

    @_locked
    def list_customer_invoices_page(self, customer_uuid: str, request: PageRequest) -> dict[str, Any]:
        """``GET /v1/import/customers/{uuid}/invoices``: ``{"customer_uuid", "invoices", ...}``."""
        if customer_uuid not in self._customers:
            raise detailed_error(404, INVOICE_NOT_FOUND_MESSAGE, "invoice")
        invoices = [self._invoices[u] for u in self._invoices_by_customer.get(customer_uuid, ())]
        invoices.sort(key=lambda invoice: invoice.seq)
        page = paginate(invoices, lambda invoice: invoice.seq, request)
        return {"customer_uuid": customer_uuid} | page_body(
            "invoices", [invoice.to_api() for invoice in page.items], page, request, empty_total_pages=0
        )

    @_locked
    def list_invoices_page(
        self,
        request: PageRequest,
        customer_uuid: str | None = None,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/invoices``: filtered by customer, data source, external id; one cursor page."""
        if data_source_uuid is not None and external_id is not None:
            found = self._invoice_by_external_id.get((data_source_uuid, external_id))
            candidates = [self._invoices[found]] if found else []
        elif customer_uuid is not None:
            candidates = [self._invoices[u] for u in self._invoices_by_customer.get(customer_uuid, ())]
        else:
            candidates = list(self._invoices.values())
        candidates = sorted(
            (
                invoice
                for invoice in candidates
                if customer_uuid in (None, invoice.customer_uuid)
                and data_source_uuid in (None, invoice.data_source_uuid)
                and external_id in (None, invoice.external_id)
            ),
            key=lambda invoice: invoice.seq,
        )
        page = paginate(candidates, lambda invoice: invoice.seq, request)
        return page_body(
            "invoices", [invoice.to_api() for invoice in page.items], page, request, empty_total_pages=0
        )

    @_locked
    def invoices(
        self, data_source_uuid: str | None = None, customer_uuid: str | None = None
    ) -> list[dict[str, Any]]:
        """Every invoice (of one data source / customer) in API form (test helper)."""
        return [
            invoice.to_api()
            for invoice in self._invoices.values()
            if data_source_uuid in (None, invoice.data_source_uuid)
            and customer_uuid in (None, invoice.customer_uuid)
        ]

    # -- JSON (bulk) imports -----------------------------------------------------------------------

    @_locked
    def create_json_import(self, data_source_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/data_sources/{uuid}/json_imports``: queue it (201, status "queued")."""
        self._data_source(data_source_uuid)
        bulk.check_payload_shape(body)
        external_id = body.get("external_id")
        if (
            external_id is not None
            and (data_source_uuid, str(external_id)) in self._json_import_by_external_id
        ):
            raise field_errors({"external_id": "has already been taken"})
        now = self._clock()
        delay = self.settings.json_import_delay_seconds
        record = JsonImportRecord(
            id=str(uuid.uuid4()),
            data_source_uuid=data_source_uuid,
            external_id=str(external_id) if external_id is not None else None,
            created_at=self._now(),
            processing_at=now + delay / 2,
            due_at=now + delay,
            payload=body,
        )
        self._json_imports[record.id] = record
        if record.external_id is not None:
            self._json_import_by_external_id[(data_source_uuid, record.external_id)] = record.id
        heapq.heappush(self._due_work, (record.due_at, next(self._due_counter), "json_import", record.id))
        self._changed()
        return record.to_api(now)

    @_locked
    def get_json_import(self, data_source_uuid: str, import_id: str) -> dict[str, Any]:
        """``GET .../json_imports/{id or external_id}``: queued → processing → completed over the delay."""
        self._data_source(data_source_uuid)
        found = self._json_imports.get(import_id)
        if found is None or found.data_source_uuid != data_source_uuid:
            found_id = self._json_import_by_external_id.get((data_source_uuid, import_id))
            found = self._json_imports.get(found_id) if found_id else None
        if found is None:
            raise bare_error(404, "Import not found")
        return found.to_api(self._clock())

    @_locked
    def json_imports(self) -> list[dict[str, Any]]:
        """Every JSON import in API form (test helper)."""
        now = self._clock()
        return [record.to_api(now) for record in self._json_imports.values()]

    # hooks for `bulk`, always called under the lock --------------------------------------------

    def upsert_customer_for_import(self, data_source_uuid: str, raw: dict[str, Any]) -> None:
        """Create the customer, or update it when (data source, external id) exists; raises `ApiError`."""
        existing = self._customer_by_identity.get((data_source_uuid, str(raw.get("external_id"))))
        if existing is None:
            self._create_customer({**raw, "data_source_uuid": data_source_uuid})
            return
        customer = self._customers[existing]
        changes = read_customer_changes(raw, self.settings.strictness, self._now())
        self._unindex_customer(customer)
        try:
            self._apply_customer_changes(customer, changes)
        finally:
            self._index_customer(customer)

    def upsert_plan_for_import(self, data_source_uuid: str, raw: dict[str, Any]) -> None:
        """Create the plan, or update name and interval when (data source, external id) exists."""
        existing = self._plan_by_external_id.get((data_source_uuid, str(raw.get("external_id"))))
        if existing is None:
            self._create_plan({**raw, "data_source_uuid": data_source_uuid})
            return
        errors = plan_field_errors(raw, True)
        if errors:
            raise field_errors(errors)
        plan = self._plans[existing]
        plan.name, plan.interval_count, plan.interval_unit = (
            raw["name"],
            raw["interval_count"],
            raw["interval_unit"],
        )

    def plan_uuid_for_import(self, data_source_uuid: str, plan_external_id: str) -> str | None:
        """The uuid of the plan (data source, external id), or None."""
        return self._plan_by_external_id.get((data_source_uuid, plan_external_id))

    def import_invoice_for_import(
        self, data_source_uuid: str, customer_external_id: str, raw: dict[str, Any]
    ) -> dict[str, str]:
        """Store one invoice for a customer of the data source; its errors (empty when stored)."""
        customer_uuid = self._customer_by_identity.get((data_source_uuid, customer_external_id))
        if customer_uuid is None:
            return {"customer_external_id": "No customer with this external ID in the data source."}
        customer = self._customers[customer_uuid]
        raw = {**raw, "data_source_uuid": data_source_uuid, "customer_external_id": customer_external_id}
        (draft,) = self._check_invoice_batch(customer, [raw])
        if not draft.errors:
            self._store_invoice(customer, draft)
        return draft.errors

    # -- async work --------------------------------------------------------------------------------

    def _apply_due_work(self) -> None:
        now = self._clock()
        while self._due_work and self._due_work[0][0] <= now:
            _, _, kind, work_id = heapq.heappop(self._due_work)
            if kind == "merge":
                merge = self._merges[work_id]
                if merge.kind == "merge":
                    self._apply_merge(merge)
                else:
                    self._apply_unmerge(merge)
            else:
                record = self._json_imports[work_id]
                record.status_details = bulk.apply_json_import(
                    self, record.data_source_uuid, record.payload or {}
                )
                record.payload = None
                record.completed_at = self._now()
            self._changed()

    @_locked
    def apply_due_work(self) -> None:
        """Apply merges and imports whose time has come (every public method does this first)."""

    # -- whole-state views -------------------------------------------------------------------------

    @_locked
    def snapshot(self) -> dict[str, Any]:
        """Everything, in API form, for ``GET /_sandbox/state``."""
        now = self._clock()
        return {
            "data_sources": [source.to_api() for source in self._data_sources.values()],
            "customers": [self._render_customer(customer) for customer in self._customers.values()],
            "plans": [plan.to_api() for plan in self._plans.values()],
            "invoices": [invoice.to_api() for invoice in self._invoices.values()],
            "merges": [merge.to_api() for merge in self._merges.values()],
            "json_imports": [record.to_api(now) for record in self._json_imports.values()],
        }

    @_locked
    def reset(self) -> None:
        """Forget everything (``POST /_sandbox/reset``)."""
        self._clear()
        self._changed()

    @_locked
    def to_storage(self) -> dict[str, Any]:
        """The whole state as JSON values, for the state file."""
        return {
            "format": STORAGE_FORMAT,
            "next_customer_id": self._next_customer_id,
            "next_seq": self._next_seq,
            "data_sources": [to_storage(r) for r in self._data_sources.values()],
            "customers": [to_storage(r) for r in self._customers.values()],
            "plans": [to_storage(r) for r in self._plans.values()],
            "invoices": [to_storage(r) for r in self._invoices.values()],
            "subscriptions": [[ds, ext, sub] for (ds, ext), sub in self._subscription_uuids.items()],
            "merges": [to_storage(r) for r in self._merges.values()],
            "json_imports": [to_storage(r) for r in self._json_imports.values()],
        }

    @_locked
    def versioned_storage(self) -> tuple[int, dict[str, Any]]:
        """The state version and `to_storage` taken together, so a writer knows what it wrote."""
        return self.version, self.to_storage()

    @_locked
    def load_storage(self, stored: dict[str, Any]) -> None:
        """Replace the state by one `to_storage` wrote, rebuilding every index and pending work."""
        if stored.get("format") != STORAGE_FORMAT:
            raise ValueError(f"unknown state file format {stored.get('format')!r}")
        self._clear()
        self._next_customer_id = stored["next_customer_id"]
        self._next_seq = stored["next_seq"]
        for item in stored["data_sources"]:
            source = from_storage(DataSourceRecord, item)
            self._data_sources[source.uuid] = source
        for item in stored["customers"]:
            customer = from_storage(CustomerRecord, item)
            self._customers[customer.uuid] = customer
            self._index_customer(customer)
        for item in stored["plans"]:
            plan = from_storage(PlanRecord, item)
            self._plans[plan.uuid] = plan
            self._plan_by_external_id[(plan.data_source_uuid, plan.external_id)] = plan.uuid
        for item in stored["invoices"]:
            self._index_invoice(from_storage(InvoiceRecord, item))
        self._subscription_uuids = {(ds, ext): sub for ds, ext, sub in stored["subscriptions"]}
        for item in stored["merges"]:
            merge = from_storage(MergeRecord, item)
            self._merges[merge.id] = merge
            if merge.status == "pending":
                heapq.heappush(self._due_work, (merge.due_at, next(self._due_counter), "merge", merge.id))
        for item in stored["json_imports"]:
            record = from_storage(JsonImportRecord, item)
            self._json_imports[record.id] = record
            if record.external_id is not None:
                self._json_import_by_external_id[(record.data_source_uuid, record.external_id)] = record.id
            if record.completed_at is None:
                heapq.heappush(
                    self._due_work, (record.due_at, next(self._due_counter), "json_import", record.id)
                )


def _insert_sorted(ids: list[int], customer_id: int) -> None:
    """Add an id to a sorted list once (new ids are the largest, so this is mostly an append)."""
    position = bisect.bisect_left(ids, customer_id)
    if position == len(ids) or ids[position] != customer_id:
        ids.insert(position, customer_id)


def _remove_sorted(ids: list[int], customer_id: int) -> None:
    position = bisect.bisect_left(ids, customer_id)
    if position < len(ids) and ids[position] == customer_id:
        del ids[position]


def _earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    present = [moment for moment in (first, second) if moment is not None]
    return min(present) if present else None


def _with_errors(draft: InvoiceDraft, errors: dict[str, str], owner: Identity) -> InvoiceDraft:
    return InvoiceDraft(
        external_id=draft.external_id,
        errors=errors,
        date=draft.date,
        due_date=draft.due_date,
        currency=draft.currency,
        data_source_uuid=owner[0],
        customer_external_id=owner[1],
        line_items=draft.line_items,
        transactions=draft.transactions,
    )


def _is_prefixed_uuid(value: str, prefix: str) -> bool:
    if not value.startswith(prefix + "_"):
        return False
    try:
        uuid.UUID(value[len(prefix) + 1 :])
    except ValueError:
        return False
    return True


def to_profile_copy(customer: CustomerRecord) -> dict[str, Any]:
    """The profile fields of a customer, copied (what both records keep after an unmerge)."""
    return {
        "name": customer.name,
        "email": customer.email,
        "company": customer.company,
        "country": customer.country,
        "state": customer.state,
        "city": customer.city,
        "zip": customer.zip,
        "lead_created_at": customer.lead_created_at,
        "free_trial_started_at": customer.free_trial_started_at,
        "owner": customer.owner,
        "website_url": customer.website_url,
        "tags": list(customer.tags),
        "custom": dict(customer.custom),
        "status": customer.status,
        "customer_since": customer.customer_since,
    }
