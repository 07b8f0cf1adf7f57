"""The sandbox's ChartMogul account: data sources, customers, plans, invoices, merges, bulk imports.

`SandboxState` is a thin facade over one store per collection (`data_sources`, `customers`,
`plans`, `invoices`, `merges`, `json_imports`). It is thread-safe (one re-entrant lock around every
public method), answers in API form (plain JSON dicts) so the HTTP routes and tests read the same
thing, counts changes in `version` for the state file, and does what spans several stores
(deleting a data source or a customer).

Asynchronous work (merges, unmerges, JSON imports) is queued with a due time and applied by the
first call that finds it due, so nothing needs a timer thread and the outcome is the same as the
real API's: the 202 comes first, the effect shows up a moment later.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from mogulflow_sandbox import attributes
from mogulflow_sandbox.customers import CustomerStore, note_changes
from mogulflow_sandbox.data_sources import DataSourceStore
from mogulflow_sandbox.due_work import WorkQueue
from mogulflow_sandbox.ids import RunningNumber
from mogulflow_sandbox.invoices import InvoiceStore
from mogulflow_sandbox.json_imports import JsonImportStore
from mogulflow_sandbox.merges import MergeStore
from mogulflow_sandbox.pagination import PageRequest
from mogulflow_sandbox.plans import PlanStore
from mogulflow_sandbox.records import CustomerRecord, DataSourceRecord, InvoiceRecord, PlanRecord
from mogulflow_sandbox.settings import SandboxSettings

P = ParamSpec("P")
R = TypeVar("R")

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
        # the stores refer to one another, so they are always replaced together
        self._due_work = WorkQueue()
        # one creation order for plans and invoices: the positions list cursors point at
        self._positions = RunningNumber()
        self._data_sources = DataSourceStore()
        self._customers = CustomerStore(self._data_sources, self.settings.strictness)
        self._plans = PlanStore(self._data_sources, self._positions)
        self._invoices = InvoiceStore(self._customers, self._plans, self.settings, self._positions)
        self._merges = MergeStore(self._customers, self._invoices, self.settings, self._clock, self._due_work)
        self._json_imports = JsonImportStore(self._data_sources, self.settings, self._clock, self._due_work)

    def _changed(self) -> None:
        self.version += 1

    # -- data sources ------------------------------------------------------------------------------

    @_locked
    def create_data_source(self, name: object, system: str = "Custom") -> dict[str, Any]:
        """``POST /v1/data_sources``: 400 without a name, 422 "Has already been taken." for a taken one."""
        source = self._data_sources.create(name, system)
        self._changed()
        return source.to_api()

    @_locked
    def list_data_sources(self, name: str | None = None, system: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/data_sources``: every data source, filtered by exact ``name``/``system`` when given."""
        return [source.to_api() for source in self._data_sources.matching(name, system)]

    @_locked
    def get_data_source(self, data_source_uuid: str) -> dict[str, Any]:
        """``GET /v1/data_sources/{uuid}``; unknown → 404 ``{"error": "Data source not found"}``."""
        return self._data_sources.get(data_source_uuid).to_api()

    @_locked
    def data_source_by_name(self, name: str) -> dict[str, Any] | None:
        """The data source called ``name``, or None (test helper)."""
        return next((source.to_api() for source in self._data_sources.matching(name=name)), None)

    @_locked
    def delete_data_source(self, data_source_uuid: str) -> None:
        """``DELETE /v1/data_sources/{uuid}``: the source goes with its plans, invoices and own customers."""
        self._data_sources.get(data_source_uuid)
        self._invoices.remove_data_source(data_source_uuid)
        self._plans.remove_data_source(data_source_uuid)
        for customer in self._customers.in_data_source(data_source_uuid):
            # a merged customer survives with the identities it has in other data sources
            remaining = [identity for identity in customer.identities if identity[0] != data_source_uuid]
            if remaining:
                self._customers.keep_identities(customer, remaining)
            else:
                self._drop_customer(customer)
        self._data_sources.remove(data_source_uuid)
        self._changed()

    # -- customers ---------------------------------------------------------------------------------

    @_locked
    def create_customer_from_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/customers``: 201 body, or 422 for missing fields, bad values or a taken external id."""
        return self._customers.render(self._create_customer(body))

    @_locked
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
        customer = self._create_customer(body)
        if status is not None:
            customer.status = status
        return self._customers.render(customer)

    def _create_customer(self, body: dict[str, Any]) -> CustomerRecord:
        customer = self._customers.create(body)
        self._merges.queue_auto_merge(customer)
        self._changed()
        return customer

    @_locked
    def update_customer(self, customer_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PATCH``/``PUT /v1/customers/{uuid}``: change the fields present, re-apply the lead rule, 200."""
        customer = self._customers.get(customer_uuid)
        self._customers.update(customer, body, refuse_blank_name=True)
        self._changed()
        return self._customers.render(customer)

    @_locked
    def get_customer(self, customer_uuid: str) -> dict[str, Any]:
        """``GET /v1/customers/{uuid}``; unknown (or merged away) → 404 family B."""
        return self._customers.render(self._customers.get(customer_uuid))

    @_locked
    def customer_attributes(self, customer_uuid: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """``…/v1/customers/{uuid}/attributes[/custom|/tags]``: read, add, change or remove.

        ``action``: ``get`` or a name in `attributes.WRITES`.
        """
        customer = self._customers.get(customer_uuid)
        if action == "get":
            return attributes.attributes_body(customer)
        answer = attributes.WRITES[action](customer, body)
        note_changes(customer, "updated")
        self._changed()
        return answer

    @_locked
    def delete_customer(self, customer_uuid: str) -> None:
        """``DELETE /v1/customers/{uuid}``: the customer and its invoices go; 204."""
        self._drop_customer(self._customers.get(customer_uuid))
        self._changed()

    def _drop_customer(self, customer: CustomerRecord) -> None:
        self._invoices.remove_customer_invoices(customer.uuid)
        note_changes(customer, "deleted")
        self._customers.remove(customer)

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
        return self._customers.list_page(request, data_source_uuid, external_id, status, system)

    @_locked
    def search_customers_page(self, email: str, request: PageRequest) -> dict[str, Any]:
        """``GET /v1/customers/search?email=``: exact (case-insensitive) match; none → 404 family B."""
        return self._customers.search_page(email, request)

    @_locked
    def customers(self, data_source_uuid: str | None = None) -> list[dict[str, Any]]:
        """Every customer (of one data source, merged ones included), in API form (test helper)."""
        return [
            self._customers.render(customer) for customer in self._customers.in_data_source(data_source_uuid)
        ]

    @_locked
    def find_customer(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The customer answering for (data source, external id), merged or not, or None (test helper)."""
        customer = self._customers.find_by_identity((data_source_uuid, external_id))
        return self._customers.render(customer) if customer else None

    # -- merges ------------------------------------------------------------------------------------

    @_locked
    def request_merge(self, body: dict[str, Any]) -> None:
        """``POST /v1/customers/merges``: resolve both sides now, apply after the merge delay (202 ``{}``)."""
        self._merges.request_merge(body)
        self._changed()

    @_locked
    def request_unmerge(self, body: dict[str, Any]) -> None:
        """``POST /v1/customers/unmerges``: split (data source, external id) off a merged customer later."""
        self._merges.request_unmerge(body)
        self._changed()

    @_locked
    def merge_now(self, body: dict[str, Any]) -> dict[str, Any]:
        """Merge ``from`` into ``into`` at once, behind the client's back, as ChartMogul's automation does
        (``POST /_sandbox/merges``); answers the surviving customer."""
        survivor = self._merges.merge_now(body)
        self._changed()
        return self._customers.render(survivor)

    @_locked
    def merges(self) -> list[dict[str, Any]]:
        """Every merge and unmerge asked for, with its status (test helper)."""
        return self._merges.to_api()

    # -- plans -------------------------------------------------------------------------------------

    @_locked
    def create_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/plans``: 201, 422 family A for bad fields or a taken external id."""
        plan = self._plans.create(body)
        self._changed()
        return plan.to_api()

    @_locked
    def update_plan(self, plan_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PATCH /v1/plans/{uuid}``: name and interval only; the route answers 202 with the plan."""
        plan = self._plans.get(plan_uuid)
        self._plans.update(plan, body, partial=True)
        self._changed()
        return plan.to_api()

    @_locked
    def get_plan(self, plan_uuid: str) -> dict[str, Any]:
        """``GET /v1/plans/{uuid}``; unknown → 404 ``{"error": "Plan not found"}``."""
        return self._plans.get(plan_uuid).to_api()

    @_locked
    def delete_plan(self, plan_uuid: str) -> None:
        """``DELETE /v1/plans/{uuid}``: 204."""
        self._plans.remove(self._plans.get(plan_uuid))
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
        return self._plans.list_page(request, data_source_uuid, external_id, system)

    @_locked
    def plans(self, data_source_uuid: str | None = None) -> list[dict[str, Any]]:
        """Every plan (of one data source) in API form (test helper)."""
        return [plan.to_api() for plan in self._plans.matching(data_source_uuid)]

    # -- invoices ----------------------------------------------------------------------------------

    @_locked
    def import_invoices(self, customer_uuid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/import/customers/{uuid}/invoices`` → (status, body): 201, or 422 family F."""
        status, answer = self._invoices.import_batch(customer_uuid, body)
        self._changed()
        return status, answer

    @_locked
    def add_line_item(self, invoice_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/import/invoices/{uuid}/line_items``: 201 line item; 404 family C; 422 family A."""
        item = self._invoices.add_line_item(invoice_uuid, body)
        self._changed()
        return item.to_api()

    @_locked
    def get_invoice(self, invoice_uuid: str) -> dict[str, Any]:
        """``GET /v1/invoices/{uuid}``: 422 family D for a malformed uuid, 404 family C for an unknown one."""
        return self._invoices.get(invoice_uuid).to_api()

    @_locked
    def delete_invoice(self, invoice_uuid: str) -> None:
        """``DELETE /v1/invoices/{uuid}``: 204; malformed uuid 422 family D; unknown 404 family C."""
        self._invoices.remove(self._invoices.get(invoice_uuid))
        self._changed()

    @_locked
    def list_customer_invoices_page(self, customer_uuid: str, request: PageRequest) -> dict[str, Any]:
        """``GET /v1/import/customers/{uuid}/invoices``: ``{"customer_uuid", "invoices", ...}``."""
        return self._invoices.list_customer_page(customer_uuid, request)

    @_locked
    def list_invoices_page(
        self,
        request: PageRequest,
        customer_uuid: str | None = None,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/invoices``: filtered by customer, data source, external id; one cursor page."""
        return self._invoices.list_page(request, customer_uuid, data_source_uuid, external_id)

    @_locked
    def invoices(
        self, data_source_uuid: str | None = None, customer_uuid: str | None = None
    ) -> list[dict[str, Any]]:
        """Every invoice (of one data source / customer) in API form (test helper)."""
        return [invoice.to_api() for invoice in self._invoices.matching(data_source_uuid, customer_uuid)]

    # -- JSON (bulk) imports -----------------------------------------------------------------------

    @_locked
    def create_json_import(self, data_source_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/data_sources/{uuid}/json_imports``: queue it (201, status "queued")."""
        created = self._json_imports.create(data_source_uuid, body)
        self._changed()
        return created

    @_locked
    def get_json_import(self, data_source_uuid: str, import_id: str) -> dict[str, Any]:
        """``GET .../json_imports/{id or external_id}``: queued → processing → completed over the delay."""
        return self._json_imports.get(data_source_uuid, import_id)

    @_locked
    def json_imports(self) -> list[dict[str, Any]]:
        """Every JSON import in API form (test helper)."""
        return self._json_imports.to_api(self._clock())

    # `bulk.ImportTarget`: what a JSON import writes through, always called under the lock -----------

    def upsert_customer_for_import(self, data_source_uuid: str, raw: dict[str, Any]) -> None:
        """Create the customer, or update it when (data source, external id) exists; raises `ApiError`."""
        existing = self._customers.find_by_identity((data_source_uuid, str(raw.get("external_id"))))
        if existing is None:
            self._create_customer({**raw, "data_source_uuid": data_source_uuid})
        else:
            self._customers.update(existing, raw, refuse_blank_name=False)

    def upsert_plan_for_import(self, data_source_uuid: str, raw: dict[str, Any]) -> None:
        """Create the plan, or update name and interval when (data source, external id) exists."""
        if self._plans.upsert(data_source_uuid, raw):
            self._changed()

    def plan_uuid_for_import(self, data_source_uuid: str, plan_external_id: str) -> str | None:
        """The uuid of the plan (data source, external id), or None."""
        return self._plans.uuid_for(data_source_uuid, plan_external_id)

    def import_invoice_for_import(
        self, data_source_uuid: str, customer_external_id: str, raw: dict[str, Any]
    ) -> dict[str, str]:
        """Store one invoice for a customer of the data source; its errors (empty when stored)."""
        return self._invoices.import_one(data_source_uuid, customer_external_id, raw)

    # -- async work --------------------------------------------------------------------------------

    def _apply_due_work(self) -> None:
        for work in self._due_work.pop_due(self._clock()):
            if work.kind == "merge":
                self._merges.apply(work.work_id)
            else:
                self._json_imports.apply(work.work_id, self)
            self._changed()

    @_locked
    def apply_due_work(self) -> None:
        """Apply merges and imports whose time has come (every public method does this first)."""

    # -- the fast path (benches) --------------------------------------------------------------------

    @_locked
    def add_records(
        self, records: Iterable[DataSourceRecord | CustomerRecord | PlanRecord | InvoiceRecord]
    ) -> int:
        """Hold records as they are, indexed as if created, without the API's checks or change log.

        How a bench seeds an account of a million customers in seconds rather than a million
        requests. Ids, uuids and positions are the caller's; the running numbers move past them, so
        later creates never reuse one. Returns how many records were added.
        """
        stores = {
            DataSourceRecord: self._data_sources,
            CustomerRecord: self._customers,
            PlanRecord: self._plans,
            InvoiceRecord: self._invoices,
        }
        added = 0
        for record in records:
            stores[type(record)]._keep(record)  # type: ignore[attr-defined]
            if isinstance(record, CustomerRecord):
                self._customers.next_id = max(self._customers.next_id, record.id + 1)
            if isinstance(record, PlanRecord | InvoiceRecord):
                self._positions.next = max(self._positions.next, record.seq + 1)
            if isinstance(record, InvoiceRecord):
                self._invoices.note_subscriptions(record)
            added += 1
        self._changed()
        return added

    # -- whole-state views -------------------------------------------------------------------------

    @_locked
    def snapshot(self) -> dict[str, Any]:
        """Everything, in API form, for ``GET /_sandbox/state``."""
        now = self._clock()
        return {
            "data_sources": self._data_sources.to_api(),
            "customers": self._customers.to_api(),
            "plans": self._plans.to_api(),
            "invoices": self._invoices.to_api(),
            "merges": self._merges.to_api(),
            "json_imports": self._json_imports.to_api(now),
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
            "next_customer_id": self._customers.next_id,
            "next_seq": self._positions.next,
            "data_sources": self._data_sources.to_storage(),
            "customers": self._customers.to_storage(),
            "plans": self._plans.to_storage(),
            "invoices": self._invoices.to_storage(),
            "subscriptions": self._invoices.subscriptions_to_storage(),
            "merges": self._merges.to_storage(),
            "json_imports": self._json_imports.to_storage(),
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
        self._customers.next_id = stored["next_customer_id"]
        self._positions.next = stored["next_seq"]
        self._data_sources.load(stored["data_sources"])
        self._customers.load(stored["customers"])
        self._plans.load(stored["plans"])
        self._invoices.load(stored["invoices"])
        self._invoices.load_subscriptions(stored["subscriptions"])
        self._merges.load(stored["merges"])
        self._json_imports.load(stored["json_imports"])
