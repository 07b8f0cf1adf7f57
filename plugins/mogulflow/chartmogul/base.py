"""`ClientBase`: what the sync and the async client share: construction, settings, repr, endpoints.

Each public method is written once here, as a builder of its flow (`@endpoint`) or of its listing
(`@listing`). Reading the attribute on a client binds the builder to that client's runner: the
sync client's `_run` returns the flow's value, the async client's returns an awaitable of it, and
`_iterate` an iterator or an async iterator of the entries. So the two front ends differ only in
how they perform a step and walk pages, and the types a caller sees are exact for each of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from mogulflow.chartmogul import attributes as attribute_flows
from mogulflow.chartmogul import bulk, flows
from mogulflow.chartmogul import invoices as invoice_flows
from mogulflow.chartmogul.attempts import Attempts, FlowRun
from mogulflow.chartmogul.flows import (
    CUSTOMERS,
    INVOICES,
    MAX_PER_PAGE,
    PLANS,
    Call,
    Flow,
    Pages,
    WriteOutcome,
    filters,
)
from mogulflow.chartmogul.pacing import RateLimiter
from mogulflow.chartmogul.retry import (
    DEFAULT_CIRCUIT_COOLDOWN,
    DEFAULT_CIRCUIT_THRESHOLD,
    CircuitBreaker,
    RetryPolicy,
)
from mogulflow.chartmogul.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_TIMEOUT,
    ClientSettings,
    describe_settings,
)

if TYPE_CHECKING:
    from mogulflow.chartmogul.client import AsyncChartMogulClient, ChartMogulClient

P = ParamSpec("P")
T = TypeVar("T")
B = TypeVar("B")
R = TypeVar("R")
#: The httpx transport type of a front end (`httpx.BaseTransport` or `httpx.AsyncBaseTransport`).
TransportT = TypeVar("TransportT")
#: One object of the API, as JSON.
Entry = dict[str, Any]


class _Method(Generic[P, B]):
    """A public client method written once: a builder whose product the client's runner handles."""

    def __init__(self, build: Callable[Concatenate[ClientBase[Any], P], B]) -> None:
        self._build = build
        self.__name__ = build.__name__
        self.__doc__ = build.__doc__

    def _bind(self, client: ClientBase[Any], runner: Callable[[B], R]) -> Callable[P, R]:
        """The method as read on `client`: build with the caller's arguments, hand to `runner`."""
        build = self._build

        def method(*args: P.args, **kwargs: P.kwargs) -> R:
            return runner(build(client, *args, **kwargs))

        method.__name__ = method.__qualname__ = self.__name__
        method.__doc__ = self.__doc__
        return method


class endpoint(_Method[P, Flow[T]]):  # lower case: a decorator, like `property`
    """A method that builds a request flow: sync clients return its value, async ones an awaitable."""

    @overload
    def __get__(self, client: None, owner: type[object]) -> Self: ...
    @overload
    def __get__(
        self, client: AsyncChartMogulClient, owner: type[object]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, client: ChartMogulClient, owner: type[object]) -> Callable[P, T]: ...
    def __get__(self, client: ClientBase[Any] | None, owner: type[object]) -> object:
        return self if client is None else self._bind(client, client._run)


class listing(_Method[P, Pages]):  # lower case: a decorator, like `property`
    """A method that names a paginated listing: sync clients iterate it, async ones `async for` it."""

    @overload
    def __get__(self, client: None, owner: type[object]) -> Self: ...
    @overload
    def __get__(
        self, client: AsyncChartMogulClient, owner: type[object]
    ) -> Callable[P, AsyncIterator[Entry]]: ...
    @overload
    def __get__(self, client: ChartMogulClient, owner: type[object]) -> Callable[P, Iterator[Entry]]: ...
    def __get__(self, client: ClientBase[Any] | None, owner: type[object]) -> object:
        return self if client is None else self._bind(client, client._iterate)


class ClientBase(ABC, Generic[TransportT]):
    """Settings, pace, circuit and the endpoint table of a ChartMogul client; subclasses run flows."""

    settings: ClientSettings
    limiter: RateLimiter
    circuit_breaker: CircuitBreaker

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str,
        requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        circuit_threshold: int = DEFAULT_CIRCUIT_THRESHOLD,
        circuit_cooldown: float = DEFAULT_CIRCUIT_COOLDOWN,
        limiter: RateLimiter | None = None,
        transport: TransportT | None = None,
    ) -> None:
        settings = ClientSettings(
            base_url=base_url,
            api_key=api_key,
            requests_per_second=requests_per_second,
            max_connections=max_connections,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            circuit_threshold=circuit_threshold,
            circuit_cooldown=circuit_cooldown,
        )
        self._setup(settings, limiter=limiter, transport=transport)

    @classmethod
    def from_settings(
        cls,
        settings: ClientSettings,
        *,
        limiter: RateLimiter | None = None,
        transport: TransportT | None = None,
    ) -> Self:
        """Build a client from a `ClientSettings`; pass another client's `limiter` to share its pace."""
        client = cls.__new__(cls)
        client._setup(settings, limiter=limiter, transport=transport)
        return client

    def _setup(
        self, settings: ClientSettings, *, limiter: RateLimiter | None, transport: TransportT | None
    ) -> None:
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.requests_per_second)
        self.circuit_breaker = CircuitBreaker(
            threshold=settings.circuit_threshold, cooldown=settings.circuit_cooldown
        )
        self._open(settings, transport)

    def __repr__(self) -> str:
        return describe_settings(type(self).__name__, self.settings)

    __str__ = __repr__

    # ---- what a front end provides

    @abstractmethod
    def _open(self, settings: ClientSettings, transport: TransportT | None) -> None:
        """Create the HTTP pool and the bound on requests in flight."""

    @abstractmethod
    def _run(self, flow: Flow[T]) -> T | Awaitable[T]:
        """Perform a flow's steps; its value (sync) or an awaitable of it (async)."""

    @abstractmethod
    def _iterate(self, pages: Pages) -> Iterator[Entry] | AsyncIterator[Entry]:
        """Every entry of a listing, page by page."""

    def _start(self, flow: Flow[T]) -> FlowRun[T]:
        """The flow, driven down to sends and pauses with this client's retry bookkeeping."""
        return FlowRun(flow, self._attempts)

    def _attempts(self, call: Call) -> Attempts:
        return Attempts(call, self.settings, self.limiter, self.circuit_breaker)

    # ---- the endpoint table (see docs/DESIGN.md)

    @endpoint
    def ping(self) -> Flow[bool]:
        """GET /v1/ping: True when the API answers "pong!" (raises `AuthenticationError` on a bad key)."""
        return flows.ping()

    @endpoint
    def list_data_sources(self, name: str | None = None) -> Flow[list[Entry]]:
        """GET /v1/data_sources, optionally only those with exactly this name."""
        return flows.list_data_sources(name)

    @endpoint
    def create_data_source(self, name: str) -> Flow[Entry]:
        """POST /v1/data_sources; a lost answer is resolved by looking the name up, not by re-posting."""
        return flows.create_data_source(self.settings.retry, name)

    @endpoint
    def create_customer(self, payload: Mapping[str, Any]) -> Flow[Entry]:
        """POST /v1/customers once in effect; raises `ValidationError` if the external id already exists."""
        return flows.create_object(self.settings.retry, CUSTOMERS, payload)

    @endpoint
    def update_customer(self, uuid: str, fields: Mapping[str, Any]) -> Flow[Entry]:
        """PATCH /v1/customers/{uuid} with `fields`; returns the updated customer."""
        return flows.update_object(CUSTOMERS, uuid, fields)

    @endpoint
    def get_customer(self, uuid: str) -> Flow[Entry]:
        """GET /v1/customers/{uuid} (raises `NotFoundError`)."""
        return flows.get_object(CUSTOMERS, uuid)

    @endpoint
    def delete_customer(self, uuid: str) -> Flow[None]:
        """DELETE /v1/customers/{uuid}: the customer and its invoices (raises `NotFoundError` on 404)."""
        return flows.delete_object(self.settings.retry, CUSTOMERS, uuid)

    @endpoint
    def find_customer(self, data_source_uuid: str, external_id: str) -> Flow[Entry | None]:
        """The customer with this external id in this data source, or None."""
        return flows.find_object(
            CUSTOMERS, {"data_source_uuid": data_source_uuid, "external_id": external_id}
        )

    @listing
    def iter_customers(
        self,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Pages:
        """Every customer matching the filters, page by page (cursor pagination)."""
        return CUSTOMERS.pages(data_source_uuid, external_id, per_page)

    @endpoint
    def search_customers(self, email: str) -> Flow[list[Entry]]:
        """GET /v1/customers/search?email=: every customer with that email ([] when none)."""
        return flows.search_customers(email)

    @endpoint
    def upsert_customer(self, payload: Mapping[str, Any]) -> Flow[WriteOutcome]:
        """Create the customer, or adopt the one with its external id and PATCH what differs."""
        return flows.upsert(self.settings.retry, CUSTOMERS, payload)

    @endpoint
    def merge_customers(self, from_: str | Mapping[str, Any], into: str | Mapping[str, Any]) -> Flow[None]:
        """POST /v1/customers/merges: merge `from_` into `into` (uuids or {data_source_uuid, external_id})."""
        return flows.merge_customers(from_, into)

    @endpoint
    def get_customer_attributes(self, uuid: str) -> Flow[Entry]:
        """GET /v1/customers/{uuid}/attributes: its tags and custom attributes (and others')."""
        return attribute_flows.get_attributes(uuid)

    @endpoint
    def add_custom_attributes(self, uuid: str, attributes: Sequence[Mapping[str, Any]]) -> Flow[Entry]:
        """POST /v1/customers/{uuid}/attributes/custom `[{type, key, value}]`; all custom attributes after."""
        return attribute_flows.add_custom(uuid, attributes)

    @endpoint
    def update_custom_attributes(self, uuid: str, values: Mapping[str, Any]) -> Flow[Entry]:
        """PUT /v1/customers/{uuid}/attributes/custom `{key: value}`; every custom attribute after."""
        return attribute_flows.update_custom(uuid, values)

    @endpoint
    def remove_custom_attributes(self, uuid: str, keys: Collection[str]) -> Flow[Entry]:
        """DELETE /v1/customers/{uuid}/attributes/custom `[keys]`; the custom attributes left."""
        return attribute_flows.remove_custom(uuid, keys)

    @endpoint
    def add_tags(self, uuid: str, tags: Collection[str]) -> Flow[list[str]]:
        """POST /v1/customers/{uuid}/attributes/tags; every tag after."""
        return attribute_flows.add_tags(uuid, tags)

    @endpoint
    def remove_tags(self, uuid: str, tags: Collection[str]) -> Flow[list[str]]:
        """DELETE /v1/customers/{uuid}/attributes/tags; the tags left."""
        return attribute_flows.remove_tags(uuid, tags)

    @endpoint
    def create_plan(self, payload: Mapping[str, Any]) -> Flow[Entry]:
        """POST /v1/plans once in effect; raises `ValidationError` if the external id already exists."""
        return flows.create_object(self.settings.retry, PLANS, payload)

    @endpoint
    def update_plan(self, uuid: str, fields: Mapping[str, Any]) -> Flow[Entry]:
        """PATCH /v1/plans/{uuid} with `fields`; returns the updated plan."""
        return flows.update_object(PLANS, uuid, fields)

    @endpoint
    def find_plan(self, data_source_uuid: str, external_id: str) -> Flow[Entry | None]:
        """The plan with this external id in this data source, or None."""
        return flows.find_object(PLANS, {"data_source_uuid": data_source_uuid, "external_id": external_id})

    @listing
    def iter_plans(
        self,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Pages:
        """Every plan matching the filters, page by page."""
        return PLANS.pages(data_source_uuid, external_id, per_page)

    @endpoint
    def upsert_plan(self, payload: Mapping[str, Any]) -> Flow[WriteOutcome]:
        """Create the plan, or adopt the one with its external id and PATCH what differs."""
        return flows.upsert(self.settings.retry, PLANS, payload)

    @endpoint
    def import_invoices(
        self, customer_uuid: str, invoices: Sequence[Mapping[str, Any]]
    ) -> Flow[invoice_flows.InvoiceImportResult]:
        """POST /v1/import/customers/{uuid}/invoices; per-invoice outcomes, existing ones count as done."""
        return invoice_flows.import_invoices(self.settings.retry, customer_uuid, invoices)

    @endpoint
    def find_invoice(self, data_source_uuid: str, external_id: str) -> Flow[Entry | None]:
        """The invoice with this external id in this data source, or None."""
        return invoice_flows.find_invoice({"data_source_uuid": data_source_uuid}, external_id)

    @listing
    def iter_invoices(
        self,
        data_source_uuid: str | None = None,
        customer_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Pages:
        """Every invoice matching the filters, page by page (GET /v1/invoices)."""
        given = filters(
            data_source_uuid=data_source_uuid, customer_uuid=customer_uuid, external_id=external_id
        )
        return Pages("/v1/invoices", "invoices", given, per_page)

    @endpoint
    def delete_invoice(self, uuid: str) -> Flow[None]:
        """DELETE /v1/invoices/{uuid} (raises `NotFoundError` unless our own lost attempt deleted it)."""
        return invoice_flows.delete_invoice(self.settings.retry, uuid)

    @endpoint
    def delete_invoice_by_uuid(self, uuid: str) -> Flow[None]:
        """DELETE /v1/invoices/{uuid}; a 404 always raises `NotFoundError`, for the caller to confirm by
        lookup (`delete_invoice` counts a 404 after its own lost attempt as done)."""
        return flows.delete_object(self.settings.retry, INVOICES, uuid)

    @endpoint
    def add_line_item(self, invoice_uuid: str, line_item: Mapping[str, Any]) -> Flow[Entry]:
        """POST /v1/import/invoices/{uuid}/line_items; an existing item with that external id is returned."""
        return invoice_flows.add_line_item(self.settings.retry, invoice_uuid, line_item)

    @endpoint
    def create_json_import(self, data_source_uuid: str, payload: Mapping[str, Any]) -> Flow[Entry]:
        """POST /v1/data_sources/{ds}/json_imports (raises `BulkImportUnsupportedError` on 404/405)."""
        return bulk.create_json_import(self.settings.retry, data_source_uuid, payload)

    @endpoint
    def get_json_import(self, data_source_uuid: str, import_id: str) -> Flow[Entry]:
        """GET /v1/data_sources/{ds}/json_imports/{import_id}: the import's status."""
        return bulk.get_json_import(data_source_uuid, import_id)

    @endpoint
    def run_json_import(
        self,
        data_source_uuid: str,
        payload: Mapping[str, Any],
        *,
        poll_interval: float = bulk.DEFAULT_POLL_INTERVAL,
        timeout: float = bulk.DEFAULT_IMPORT_TIMEOUT,
    ) -> Flow[Entry]:
        """Submit a bulk import (or follow the one already submitted with its external id) to completion."""
        return bulk.run_json_import(self.settings.retry, data_source_uuid, payload, poll_interval, timeout)
