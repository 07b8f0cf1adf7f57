"""ChartMogul REST v1 clients: `ChartMogulClient` (sync) and `AsyncChartMogulClient` (asyncio).

Both are thin drivers around one implementation of the endpoint logic. Each operation is written
once, as a generator ("flow") that yields what it needs done (`_Call`: an HTTP request,
`_Pause`: a wait) and receives the decoded JSON answer or has the error thrown into it. The sync
client runs flows with `httpx.Client` and `time.sleep`, the async one with `httpx.AsyncClient`
and `asyncio.sleep`, so the idempotency rules (look up before re-sending a create whose answer
was lost, "already exists" means done) cannot drift apart between the two.

Every request of a client goes through the same `RateLimiter` (pace), the same connection slots
(parallelism), the same `RetryPolicy` and the same `CircuitBreaker`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from mogulflow import __version__
from mogulflow.api.errors import (
    BulkImportFailedError,
    BulkImportUnsupportedError,
    ChartMogulError,
    CircuitOpenError,
    InvoiceError,
    NotFoundError,
    TransientError,
    ValidationError,
    error_for_status,
    parse_error_body,
)
from mogulflow.api.pacing import ConnectionSlots, RateLimiter
from mogulflow.api.retry import (
    DEFAULT_CIRCUIT_COOLDOWN,
    DEFAULT_CIRCUIT_THRESHOLD,
    CircuitBreaker,
    RetryPolicy,
    parse_retry_after,
    request_was_not_sent,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.chartmogul.com"
DEFAULT_REQUESTS_PER_SECOND = 35.0
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_TIMEOUT = 30.0
#: ChartMogul's page size cap; larger values are silently treated as 200.
MAX_PER_PAGE = 200
#: ChartMogul's answer to more parallel connections than the account allows.
TOO_MANY_CONNECTIONS_STATUS = 503
#: Bulk import states after which polling stops.
JSON_IMPORT_DONE = "completed"
JSON_IMPORT_FAILED_STATES = frozenset({"failed", "error", "cancelled", "canceled", "rejected"})

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs; shared by the sync and async clients. The key never shows in repr."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_threshold: int = DEFAULT_CIRCUIT_THRESHOLD
    circuit_cooldown: float = DEFAULT_CIRCUIT_COOLDOWN

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalise_base_url(self.base_url))
        if not self.api_key:
            raise ValueError("a ChartMogul API key is required (the connection's password)")
        if self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be positive, got {self.requests_per_second!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections!r}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")


@dataclass(frozen=True)
class WriteOutcome:
    """What an upsert did: the object's uuid, whether we created it, whether we PATCHed it, its body."""

    uuid: str
    created: bool
    updated: bool
    body: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class InvoiceImportResult:
    """Per-invoice outcome of an import, keyed by invoice external id.

    `imported`: created by this call; `already_present`: were there before (counted as done);
    `errors`: refused by the API, with its message. Every invoice sent is in exactly one of them.
    """

    imported: dict[str, str] = field(default_factory=dict)
    already_present: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def normalise_base_url(base_url: str) -> str:
    """`https://api.chartmogul.com/v1/` → `https://api.chartmogul.com` (paths add `/v1` themselves)."""
    url = (base_url or DEFAULT_BASE_URL).strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if "://" not in url:
        raise ValueError(f"base_url needs a scheme (https://... or http://...), got {url!r}")
    return url


# --------------------------------------------------------------------------------------------
# Instructions a flow yields


@dataclass(frozen=True)
class _Call:
    """One HTTP request. `replay_safe=False` for creates: after an ambiguous failure (the server
    may have acted) the executor hands the failure back to the flow instead of re-sending."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    replay_safe: bool = True


@dataclass(frozen=True)
class _Pause:
    seconds: float


@dataclass(frozen=True)
class _CreateAnswer:
    """How a create ended: the object, whether we created it, whether it came from a lookup."""

    body: dict[str, Any]
    created: bool
    found: bool


Flow = Generator[_Call | _Pause, Any, T]


@dataclass(frozen=True)
class _ObjectKind:
    """A collection addressable by (data_source_uuid, external_id)."""

    name: str
    collection: str
    list_key: str
    #: Keys never PATCHed: they identify the object, or (attributes) come back in another shape.
    not_patched: frozenset[str] = frozenset({"data_source_uuid", "external_id"})


_CUSTOMERS = _ObjectKind(
    "customer",
    "/v1/customers",
    "entries",
    # `attributes.custom` is a list on create and a map on update/read: not comparable field-wise.
    frozenset({"data_source_uuid", "external_id", "attributes"}),
)
_PLANS = _ObjectKind("plan", "/v1/plans", "plans")


# --------------------------------------------------------------------------------------------
# Endpoint logic, shared by both clients


class _ChartMogulOperations:
    """The flows behind every public method; subclasses only execute what the flows yield."""

    settings: ClientSettings

    # ---- simple endpoints

    def _ping_flow(self) -> Flow[bool]:
        body = yield _Call("GET", "/v1/ping")
        return isinstance(body, Mapping) and body.get("data") == "pong!"

    def _list_data_sources_flow(self, name: str | None) -> Flow[list[dict[str, Any]]]:
        body = yield _Call("GET", "/v1/data_sources", params={"name": name} if name else None)
        sources = list(body.get("data_sources") or [])
        # Filter locally too: not every server honours the `name` filter.
        return [s for s in sources if name is None or s.get("name") == name]

    def _create_data_source_flow(self, name: str) -> Flow[dict[str, Any]]:
        def find() -> Flow[dict[str, Any] | None]:
            found = yield from self._list_data_sources_flow(name)
            return found[0] if found else None

        answer = yield from self._create_once_flow(
            "data source", "/v1/data_sources", {"name": name}, find, adopt_existing=False
        )
        return answer.body

    def _create_object_flow(self, kind: _ObjectKind, payload: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        answer = yield from self._create_once_flow(
            kind.name,
            kind.collection,
            payload,
            lambda: self._find_object_flow(kind, payload),
            adopt_existing=False,
        )
        return answer.body

    def _update_object_flow(
        self, kind: _ObjectKind, uuid: str, fields: Mapping[str, Any]
    ) -> Flow[dict[str, Any]]:
        # PATCH sets fields to given values: replaying it is harmless, so the executor may retry it.
        body = yield _Call("PATCH", f"{kind.collection}/{_segment(uuid)}", body=dict(fields))
        return dict(body)

    def _get_customer_flow(self, uuid: str) -> Flow[dict[str, Any]]:
        body = yield _Call("GET", f"/v1/customers/{_segment(uuid)}")
        return dict(body)

    def _page_flow(self, path: str, params: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        body = yield _Call("GET", path, params=params)
        return dict(body)

    def _search_customers_flow(self, email: str) -> Flow[list[dict[str, Any]]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"email": email, "per_page": MAX_PER_PAGE}
        while True:
            try:
                body = yield _Call("GET", "/v1/customers/search", params=params)
            except NotFoundError:
                # ChartMogul answers "no match" with a 404 (node issue #25): that is an empty result.
                return found
            found.extend(body.get("entries") or [])
            next_params = _next_page_params(params, body)
            if next_params is None:
                return found
            params = next_params

    def _find_object_flow(self, kind: _ObjectKind, payload: Mapping[str, Any]) -> Flow[dict[str, Any] | None]:
        data_source_uuid = payload.get("data_source_uuid")
        external_id = payload.get("external_id")
        if not data_source_uuid or external_id is None:
            raise ValueError(f"a {kind.name} lookup needs data_source_uuid and external_id")
        params: dict[str, Any] = {
            "data_source_uuid": data_source_uuid,
            "external_id": external_id,
            "per_page": MAX_PER_PAGE,
        }
        while True:
            body = yield _Call("GET", kind.collection, params=params)
            for entry in body.get(kind.list_key) or []:
                if _is_same_object(entry, str(data_source_uuid), str(external_id)):
                    return dict(entry)
            next_params = _next_page_params(params, body)
            if next_params is None:
                return None
            params = next_params

    def _find_invoice_flow(self, params: Mapping[str, Any], external_id: str) -> Flow[dict[str, Any] | None]:
        query: dict[str, Any] = {**params, "external_id": external_id, "per_page": MAX_PER_PAGE}
        while True:
            body = yield _Call("GET", "/v1/invoices", params=query)
            for entry in body.get("invoices") or []:
                if str(entry.get("external_id")) == external_id:
                    return dict(entry)
            next_params = _next_page_params(query, body)
            if next_params is None:
                return None
            query = next_params

    # ---- creates that may have landed

    def _create_once_flow(
        self,
        what: str,
        path: str,
        payload: Mapping[str, Any],
        find: Any,
        *,
        adopt_existing: bool,
    ) -> Flow[_CreateAnswer]:
        """POST a create at most once in effect.

        After an ambiguous failure (5xx, timeout or dropped connection once the request was
        sent) the object may exist: look it up and only re-send if it is absent. An "already
        exists" 422 after such a failure is our own earlier write; without one it means someone
        (an earlier run) created it, which `adopt_existing` accepts and otherwise re-raises.
        """
        policy = self.settings.retry
        waits = policy.waits()
        started = time.monotonic()
        maybe_landed = False
        last_error: ChartMogulError | None = None
        for _attempt in range(policy.max_attempts):
            try:
                body = yield _Call("POST", path, body=dict(payload), replay_safe=False)
                return _CreateAnswer(dict(body), created=True, found=False)
            except ValidationError as error:
                if not error.already_exists or not (adopt_existing or maybe_landed):
                    raise
                existing = yield from find()
                if existing is None:
                    # Said "exists" but cannot be found: report the API's own words, not a guess.
                    raise
                return _CreateAnswer(existing, created=maybe_landed, found=True)
            except TransientError as error:
                if not error.maybe_applied:
                    raise
                maybe_landed = True
                last_error = error
                existing = yield from find()
                if existing is not None:
                    log.info(
                        "%s create answered %s but it landed; using it", what, error.status or "no answer"
                    )
                    return _CreateAnswer(existing, created=True, found=True)
            if time.monotonic() - started > policy.max_elapsed:
                break
            yield _Pause(next(waits))
        assert last_error is not None
        raise TransientError(
            f"{what} create kept failing and the object is not there: {last_error.message}",
            status=last_error.status,
            method="POST",
            path=path,
        )

    def _upsert_flow(self, kind: _ObjectKind, payload: Mapping[str, Any]) -> Flow[WriteOutcome]:
        answer = yield from self._create_once_flow(
            kind.name,
            kind.collection,
            payload,
            lambda: self._find_object_flow(kind, payload),
            adopt_existing=True,
        )
        uuid = str(answer.body["uuid"])
        # A 201 body is the server's echo of what we sent (it normalises some fields, e.g. dates);
        # only an object we found (an earlier run's, or ours after a lost answer) needs a diff.
        changes = fields_to_update(payload, answer.body, skip=kind.not_patched) if answer.found else {}
        if not changes:
            return WriteOutcome(uuid=uuid, created=answer.created, updated=False, body=answer.body)
        body = yield from self._update_object_flow(kind, uuid, changes)
        return WriteOutcome(uuid=uuid, created=answer.created, updated=True, body=body or answer.body)

    # ---- invoices

    def _import_invoices_flow(
        self, customer_uuid: str, invoices: Sequence[Mapping[str, Any]]
    ) -> Flow[InvoiceImportResult]:
        external_ids = [str(i.get("external_id") or "") for i in invoices]
        if not all(external_ids):
            raise ValueError("every invoice needs an external_id: it is how a retried import is recognised")
        if len(set(external_ids)) != len(external_ids):
            raise ValueError("invoice external ids must be unique within one import call")
        path = f"/v1/import/customers/{_segment(customer_uuid)}/invoices"
        policy = self.settings.retry
        waits = policy.waits()
        result = InvoiceImportResult()
        pending = [dict(i) for i in invoices]
        maybe_landed: set[str] = set()

        def lookup_params(invoice: Mapping[str, Any]) -> dict[str, Any]:
            if invoice.get("data_source_uuid"):
                return {"data_source_uuid": invoice["data_source_uuid"]}
            return {"customer_uuid": customer_uuid}

        def settle_unreported(batch: list[dict[str, Any]]) -> Flow[list[dict[str, Any]]]:
            # Invoices the API did not complain about: did it import them, or none of the batch?
            still_pending = []
            for invoice in batch:
                ext = str(invoice["external_id"])
                found = yield from self._find_invoice_flow(lookup_params(invoice), ext)
                if found is not None:
                    result.imported[ext] = str(found["uuid"])
                else:
                    still_pending.append(invoice)
            return still_pending

        for _attempt in range(policy.max_attempts):
            if not pending:
                return result
            try:
                body = yield _Call("POST", path, body={"invoices": pending}, replay_safe=False)
            except ValidationError as error:
                per_invoice = _match_invoice_errors(pending, error.invoice_errors)
                unreported: list[dict[str, Any]] = []
                for invoice in pending:
                    ext = str(invoice["external_id"])
                    complaint = per_invoice.get(ext)
                    if complaint is None and not error.invoice_errors:
                        # One message for the whole batch (another error family): if it says
                        # "already exists" and the batch is one invoice, it is that invoice.
                        if error.already_exists and len(pending) == 1:
                            complaint = InvoiceError(ext, 0, error.field_errors)
                        else:
                            result.errors[ext] = error.message
                            continue
                    if complaint is None or not complaint.errors:
                        unreported.append(invoice)
                    elif complaint.already_exists:
                        found = yield from self._find_invoice_flow(lookup_params(invoice), ext)
                        if found is None:
                            result.errors[ext] = f"the API says it exists but no invoice {ext!r} was found"
                        elif ext in maybe_landed:
                            result.imported[ext] = str(found["uuid"])
                        else:
                            result.already_present[ext] = str(found["uuid"])
                    else:
                        result.errors[ext] = complaint.message
                pending = yield from settle_unreported(unreported)
                continue
            except TransientError as error:
                if not error.maybe_applied:
                    raise
                maybe_landed.update(str(i["external_id"]) for i in pending)
                pending = yield from settle_unreported(pending)
                if pending:
                    yield _Pause(next(waits))
                continue
            answered = {str(i.get("external_id")): i for i in (body.get("invoices") or [])}
            for invoice in pending:
                ext = str(invoice["external_id"])
                returned = answered.get(ext)
                if returned and returned.get("errors"):
                    result.errors[ext] = _describe_errors(returned["errors"])
                elif returned and returned.get("uuid"):
                    result.imported[ext] = str(returned["uuid"])
                else:
                    # 201 without that invoice in the answer: believe the server's state, not the echo.
                    found = yield from self._find_invoice_flow(lookup_params(invoice), ext)
                    if found is not None:
                        result.imported[ext] = str(found["uuid"])
                    else:
                        result.errors[ext] = "accepted by the API but not found afterwards"
            return result
        for invoice in pending:
            result.errors[str(invoice["external_id"])] = "not imported: the API kept failing"
        return result

    def _add_line_item_flow(self, invoice_uuid: str, line_item: Mapping[str, Any]) -> Flow[dict[str, Any]]:
        external_id = line_item.get("external_id")

        def find() -> Flow[dict[str, Any] | None]:
            if external_id is None:
                return None
            invoice = yield _Call("GET", f"/v1/invoices/{_segment(invoice_uuid)}")
            for item in invoice.get("line_items") or []:
                if item.get("external_id") == external_id:
                    return dict(item)
            return None

        answer = yield from self._create_once_flow(
            "line item",
            f"/v1/import/invoices/{_segment(invoice_uuid)}/line_items",
            line_item,
            find,
            adopt_existing=True,
        )
        return answer.body

    def _delete_invoice_flow(self, uuid: str) -> Flow[None]:
        policy = self.settings.retry
        waits = policy.waits()
        maybe_landed = False
        for _attempt in range(policy.max_attempts):
            try:
                yield _Call("DELETE", f"/v1/invoices/{_segment(uuid)}", replay_safe=False)
                return None
            except NotFoundError:
                if maybe_landed:
                    return None  # our earlier attempt deleted it
                raise
            except TransientError as error:
                if not error.maybe_applied:
                    raise
                maybe_landed = True
                yield _Pause(next(waits))
        raise TransientError("invoice delete kept failing", method="DELETE", path=f"/v1/invoices/{uuid}")

    def _merge_flow(self, from_: str | Mapping[str, Any], into: str | Mapping[str, Any]) -> Flow[None]:
        yield _Call(
            "POST", "/v1/customers/merges", body={"from": _customer_ref(from_), "into": _customer_ref(into)}
        )
        return None

    # ---- bulk

    def _create_json_import_flow(
        self, data_source_uuid: str, payload: Mapping[str, Any]
    ) -> Flow[dict[str, Any]]:
        path = f"/v1/data_sources/{_segment(data_source_uuid)}/json_imports"
        import_id = payload.get("external_id")

        def find() -> Flow[dict[str, Any] | None]:
            if not import_id:
                return None
            try:
                return (yield from self._get_json_import_flow(data_source_uuid, str(import_id)))
            except NotFoundError:
                return None

        try:
            answer = yield from self._create_once_flow(
                "json import", path, payload, find, adopt_existing=False
            )
        except NotFoundError as error:
            if "data source" in error.message.lower():
                raise
            raise _bulk_unsupported(error) from error
        except ChartMogulError as error:
            if error.status == 405:
                raise _bulk_unsupported(error) from error
            raise
        return answer.body

    def _get_json_import_flow(self, data_source_uuid: str, import_id: str) -> Flow[dict[str, Any]]:
        body = yield _Call(
            "GET", f"/v1/data_sources/{_segment(data_source_uuid)}/json_imports/{_segment(import_id)}"
        )
        return dict(body)

    def _run_json_import_flow(
        self, data_source_uuid: str, payload: Mapping[str, Any], poll_interval: float, timeout: float
    ) -> Flow[dict[str, Any]]:
        started = time.monotonic()
        import_external_id = payload.get("external_id")
        try:
            status = yield from self._create_json_import_flow(data_source_uuid, payload)
        except ValidationError as error:
            # A retried task already submitted this import: follow that one rather than fail.
            if not (error.already_exists and import_external_id):
                raise
            log.info("json import %s was already submitted; polling it", import_external_id)
            status = yield from self._get_json_import_flow(data_source_uuid, str(import_external_id))
        # The docs poll by the external id the caller chose; fall back to the server's id.
        poll_id = str(import_external_id or status.get("id") or status.get("external_id"))
        while True:
            state = str(status.get("status", "")).lower()
            if state == JSON_IMPORT_DONE:
                return status
            if state in JSON_IMPORT_FAILED_STATES:
                raise BulkImportFailedError(
                    f"json import {poll_id} ended {state}",
                    status=None,
                    method="GET",
                    path=_json_import_path(data_source_uuid),
                )
            if time.monotonic() - started > timeout:
                raise BulkImportFailedError(
                    f"json import {poll_id} still {state or 'unknown'} after {timeout:.0f} s",
                    method="GET",
                    path=_json_import_path(data_source_uuid),
                )
            yield _Pause(poll_interval)
            status = yield from self._get_json_import_flow(data_source_uuid, poll_id)


# --------------------------------------------------------------------------------------------
# One request with retries: decisions shared by both executors


@dataclass
class _Attempts:
    """Retry bookkeeping for one `_Call`; says after each outcome: done, wait and retry, or fail."""

    call: _Call
    settings: ClientSettings
    limiter: RateLimiter
    breaker: CircuitBreaker
    secret: str = field(repr=False)
    started: float = field(default_factory=time.monotonic)
    attempt: int = 0

    def __post_init__(self) -> None:
        self._waits = self.settings.retry.waits()

    def check_circuit(self) -> None:
        """Raise `CircuitOpenError` at once when the API has been refusing everything."""
        reason = self.breaker.check()
        if reason is not None:
            raise CircuitOpenError(reason, method=self.call.method, path=self.call.path)

    def on_response(self, response: httpx.Response) -> tuple[Any, float | None]:
        """Return (decoded body, None) on success, (None, wait) to retry; raise when it is over."""
        status = response.status_code
        if status < 400:
            self.breaker.record_success()
            return _decode(response), None
        parsed = parse_error_body(response.content, status=status, secret=self.secret)
        call = self.call
        policy = self.settings.retry
        if not policy.should_retry_status(status):
            self.breaker.record_success()  # the API answered; the problem is the request
            raise error_for_status(status, parsed, method=call.method, path=call.path)
        if not call.replay_safe and not policy.proves_not_applied(status):
            # The write may have happened before the 5xx: the flow decides (lookup, then maybe re-send).
            raise error_for_status(status, parsed, method=call.method, path=call.path, maybe_applied=True)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429 and retry_after is not None:
            # Every request of this client is over budget, not just this one: hold them all.
            self.limiter.pause(min(retry_after, policy.max_retry_after))
        wait = self._next_wait(retry_after)
        if wait is None:
            error = error_for_status(status, parsed, method=call.method, path=call.path)
            self.breaker.record_failure(str(error))
            raise error
        log.warning(
            "ChartMogul %s %s answered %s (attempt %d/%d); retrying in %.1f s",
            call.method, call.path, status, self.attempt, policy.max_attempts, wait,
        )  # fmt: skip
        return None, wait

    def on_exception(self, exc: Exception) -> float:
        """Return the wait before retrying a transport failure; raise when it is over."""
        call = self.call
        if not isinstance(exc, httpx.TransportError):
            raise exc
        description = _describe_transport_error(exc, self.secret)
        if not self.settings.retry.should_retry_exception(exc):
            # e.g. an unsupported scheme or a malformed URL: configuration, not weather.
            raise ChartMogulError(description, method=call.method, path=call.path) from None
        if not call.replay_safe and not request_was_not_sent(exc):
            raise TransientError(
                description, maybe_applied=True, method=call.method, path=call.path
            ) from None
        wait = self._next_wait(None)
        if wait is None:
            error = TransientError(description, method=call.method, path=call.path)
            self.breaker.record_failure(str(error))
            raise error from None
        log.warning(
            "ChartMogul %s %s failed: %s (attempt %d/%d); retrying in %.1f s",
            call.method, call.path, description, self.attempt, self.settings.retry.max_attempts, wait,
        )  # fmt: skip
        return wait

    def _next_wait(self, retry_after: float | None) -> float | None:
        policy = self.settings.retry
        if self.attempt >= policy.max_attempts:
            return None
        wait = policy.wait_for(next(self._waits), retry_after)
        if time.monotonic() - self.started + wait > policy.max_elapsed:
            return None
        return wait


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return {}


def _describe_transport_error(exc: httpx.TransportError, secret: str) -> str:
    text = f"{type(exc).__name__}: {str(exc) or 'no detail'}"
    return text.replace(secret, "***") if secret else text


def _encode(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _build_headers(settings: ClientSettings) -> dict[str, str]:
    return {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": f"mogulflow/{__version__} (+httpx)",
    }


def _build_timeout(settings: ClientSettings) -> httpx.Timeout:
    # No pool timeout: our own connection slots already bound the wait, and a pool timeout would
    # turn "busy" into a spurious error.
    return httpx.Timeout(settings.timeout, pool=None)


def _build_limits(settings: ClientSettings) -> httpx.Limits:
    return httpx.Limits(
        max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
    )


# --------------------------------------------------------------------------------------------
# The sync client


class ChartMogulClient(_ChartMogulOperations):
    """Sync ChartMogul client: paced, retrying, idempotent creates; safe to share between threads."""

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
        transport: httpx.BaseTransport | None = None,
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
        transport: httpx.BaseTransport | None = None,
    ) -> ChartMogulClient:
        """Build a client from a `ClientSettings` (e.g. the one an async client uses)."""
        client = cls.__new__(cls)
        client._setup(settings, limiter=limiter, transport=transport)
        return client

    def _setup(
        self, settings: ClientSettings, *, limiter: RateLimiter | None, transport: httpx.BaseTransport | None
    ) -> None:
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.requests_per_second)
        self.circuit_breaker = CircuitBreaker(
            threshold=settings.circuit_threshold, cooldown=settings.circuit_cooldown
        )
        self.connection_slots = ConnectionSlots(settings.max_connections)
        self._http = httpx.Client(
            base_url=settings.base_url,
            auth=httpx.BasicAuth(settings.api_key, ""),
            headers=_build_headers(settings),
            timeout=_build_timeout(settings),
            limits=_build_limits(settings),
            transport=transport,
        )

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"{type(self).__name__}(base_url={s.base_url!r}, requests_per_second={s.requests_per_second!r}, "
            f"max_connections={s.max_connections!r})"
        )

    __str__ = __repr__

    def __enter__(self) -> ChartMogulClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # ---- execution

    def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, _Pause):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    answer = self._execute(step)
                except ChartMogulError as error:
                    step = flow.throw(error)
                else:
                    step = flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _execute(self, call: _Call) -> Any:
        attempts = _Attempts(call, self.settings, self.limiter, self.circuit_breaker, self.settings.api_key)
        attempts.check_circuit()
        content = _encode(call.body) if call.body is not None else None
        while True:
            attempts.attempt += 1
            self.connection_slots.acquire()
            overloaded = False
            try:
                # Pace inside the slot, so that start times (not queue entries) follow the pace.
                self.limiter.acquire()
                try:
                    response = self._http.request(call.method, call.path, params=call.params, content=content)
                except Exception as exc:
                    wait = attempts.on_exception(exc)
                else:
                    overloaded = response.status_code == TOO_MANY_CONNECTIONS_STATUS
                    answer, wait = attempts.on_response(response)
                    if wait is None:
                        return answer
            finally:
                self.connection_slots.release(overloaded=overloaded)
            time.sleep(wait)

    # ---- public methods (see docs/DESIGN.md)

    def ping(self) -> bool:
        """GET /v1/ping: True when the API answers "pong!" (raises `AuthenticationError` on a bad key)."""
        return self._run(self._ping_flow())

    def list_data_sources(self, name: str | None = None) -> list[dict[str, Any]]:
        """GET /v1/data_sources, optionally only those with exactly this name."""
        return self._run(self._list_data_sources_flow(name))

    def create_data_source(self, name: str) -> dict[str, Any]:
        """POST /v1/data_sources; a lost answer is resolved by looking the name up, not by re-posting."""
        return self._run(self._create_data_source_flow(name))

    def create_customer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/customers once in effect; raises `ValidationError` if the external id already exists."""
        return self._run(self._create_object_flow(_CUSTOMERS, payload))

    def update_customer(self, uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /v1/customers/{uuid} with `fields`; returns the updated customer."""
        return self._run(self._update_object_flow(_CUSTOMERS, uuid, fields))

    def get_customer(self, uuid: str) -> dict[str, Any]:
        """GET /v1/customers/{uuid} (raises `NotFoundError`)."""
        return self._run(self._get_customer_flow(uuid))

    def find_customer(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The customer with this external id in this data source, or None."""
        payload = {"data_source_uuid": data_source_uuid, "external_id": external_id}
        return self._run(self._find_object_flow(_CUSTOMERS, payload))

    def iter_customers(
        self,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Every customer matching the filters, page by page (cursor pagination)."""
        params = _filters(data_source_uuid=data_source_uuid, external_id=external_id)
        yield from self._iterate("/v1/customers", "entries", params, per_page)

    def search_customers(self, email: str) -> list[dict[str, Any]]:
        """GET /v1/customers/search?email=: every customer with that email ([] when none)."""
        return self._run(self._search_customers_flow(email))

    def upsert_customer(self, payload: Mapping[str, Any]) -> WriteOutcome:
        """Create the customer, or adopt the one with its external id and PATCH what differs."""
        return self._run(self._upsert_flow(_CUSTOMERS, payload))

    def merge_customers(self, from_: str | Mapping[str, Any], into: str | Mapping[str, Any]) -> None:
        """POST /v1/customers/merges: merge `from_` into `into` (uuids or {data_source_uuid, external_id})."""
        self._run(self._merge_flow(from_, into))

    def create_plan(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/plans once in effect; raises `ValidationError` if the external id already exists."""
        return self._run(self._create_object_flow(_PLANS, payload))

    def update_plan(self, uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /v1/plans/{uuid} with `fields`; returns the updated plan."""
        return self._run(self._update_object_flow(_PLANS, uuid, fields))

    def find_plan(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The plan with this external id in this data source, or None."""
        payload = {"data_source_uuid": data_source_uuid, "external_id": external_id}
        return self._run(self._find_object_flow(_PLANS, payload))

    def iter_plans(
        self,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Every plan matching the filters, page by page."""
        params = _filters(data_source_uuid=data_source_uuid, external_id=external_id)
        yield from self._iterate("/v1/plans", "plans", params, per_page)

    def upsert_plan(self, payload: Mapping[str, Any]) -> WriteOutcome:
        """Create the plan, or adopt the one with its external id and PATCH what differs."""
        return self._run(self._upsert_flow(_PLANS, payload))

    def import_invoices(
        self, customer_uuid: str, invoices: Sequence[Mapping[str, Any]]
    ) -> InvoiceImportResult:
        """POST /v1/import/customers/{uuid}/invoices; per-invoice outcomes, existing ones count as done."""
        return self._run(self._import_invoices_flow(customer_uuid, invoices))

    def find_invoice(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The invoice with this external id in this data source, or None."""
        return self._run(self._find_invoice_flow({"data_source_uuid": data_source_uuid}, external_id))

    def iter_invoices(
        self,
        data_source_uuid: str | None = None,
        customer_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Every invoice matching the filters, page by page (GET /v1/invoices)."""
        params = _filters(
            data_source_uuid=data_source_uuid, customer_uuid=customer_uuid, external_id=external_id
        )
        yield from self._iterate("/v1/invoices", "invoices", params, per_page)

    def delete_invoice(self, uuid: str) -> None:
        """DELETE /v1/invoices/{uuid} (raises `NotFoundError` unless our own lost attempt deleted it)."""
        self._run(self._delete_invoice_flow(uuid))

    def add_line_item(self, invoice_uuid: str, line_item: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/import/invoices/{uuid}/line_items; an existing item with that external id is returned."""
        return self._run(self._add_line_item_flow(invoice_uuid, line_item))

    def create_json_import(self, data_source_uuid: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/data_sources/{ds}/json_imports (raises `BulkImportUnsupportedError` on 404/405)."""
        return self._run(self._create_json_import_flow(data_source_uuid, payload))

    def get_json_import(self, data_source_uuid: str, import_id: str) -> dict[str, Any]:
        """GET /v1/data_sources/{ds}/json_imports/{import_id}: the import's status."""
        return self._run(self._get_json_import_flow(data_source_uuid, import_id))

    def run_json_import(
        self,
        data_source_uuid: str,
        payload: Mapping[str, Any],
        *,
        poll_interval: float = 2.0,
        timeout: float = 900.0,
    ) -> dict[str, Any]:
        """Submit a bulk import (or follow the one already submitted with its external id) to completion."""
        return self._run(self._run_json_import_flow(data_source_uuid, payload, poll_interval, timeout))

    def _iterate(
        self, path: str, list_key: str, params: dict[str, Any], per_page: int
    ) -> Iterator[dict[str, Any]]:
        query: dict[str, Any] | None = {**params, "per_page": min(per_page, MAX_PER_PAGE)}
        while query is not None:
            body = self._run(self._page_flow(path, query))
            yield from body.get(list_key) or []
            query = _next_page_params(query, body)


# --------------------------------------------------------------------------------------------
# The async client


class AsyncChartMogulClient(_ChartMogulOperations):
    """Asyncio twin of `ChartMogulClient`: same settings, same methods (awaitable), same guarantees."""

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
        transport: httpx.AsyncBaseTransport | None = None,
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AsyncChartMogulClient:
        """Build an async client from a `ClientSettings`; pass a sync client's `limiter` to share its pace."""
        client = cls.__new__(cls)
        client._setup(settings, limiter=limiter, transport=transport)
        return client

    def _setup(
        self,
        settings: ClientSettings,
        *,
        limiter: RateLimiter | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.requests_per_second)
        self.circuit_breaker = CircuitBreaker(
            threshold=settings.circuit_threshold, cooldown=settings.circuit_cooldown
        )
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            auth=httpx.BasicAuth(settings.api_key, ""),
            headers=_build_headers(settings),
            timeout=_build_timeout(settings),
            limits=_build_limits(settings),
            transport=transport,
        )

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"{type(self).__name__}(base_url={s.base_url!r}, requests_per_second={s.requests_per_second!r}, "
            f"max_connections={s.max_connections!r})"
        )

    __str__ = __repr__

    async def __aenter__(self) -> AsyncChartMogulClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    close = aclose

    async def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    answer = await self._execute(step)
                except ChartMogulError as error:
                    step = flow.throw(error)
                else:
                    step = flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _execute(self, call: _Call) -> Any:
        attempts = _Attempts(call, self.settings, self.limiter, self.circuit_breaker, self.settings.api_key)
        attempts.check_circuit()
        content = _encode(call.body) if call.body is not None else None
        while True:
            attempts.attempt += 1
            async with self._slots:
                await self.limiter.acquire_async()
                try:
                    response = await self._http.request(
                        call.method, call.path, params=call.params, content=content
                    )
                except Exception as exc:
                    wait = attempts.on_exception(exc)
                else:
                    answer, wait = attempts.on_response(response)
                    if wait is None:
                        return answer
            await asyncio.sleep(wait)

    async def ping(self) -> bool:
        """GET /v1/ping: True when the API answers "pong!"."""
        return await self._run(self._ping_flow())

    async def list_data_sources(self, name: str | None = None) -> list[dict[str, Any]]:
        """GET /v1/data_sources, optionally only those with exactly this name."""
        return await self._run(self._list_data_sources_flow(name))

    async def create_data_source(self, name: str) -> dict[str, Any]:
        """POST /v1/data_sources once in effect."""
        return await self._run(self._create_data_source_flow(name))

    async def create_customer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/customers once in effect."""
        return await self._run(self._create_object_flow(_CUSTOMERS, payload))

    async def update_customer(self, uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /v1/customers/{uuid}."""
        return await self._run(self._update_object_flow(_CUSTOMERS, uuid, fields))

    async def get_customer(self, uuid: str) -> dict[str, Any]:
        """GET /v1/customers/{uuid}."""
        return await self._run(self._get_customer_flow(uuid))

    async def find_customer(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The customer with this external id in this data source, or None."""
        payload = {"data_source_uuid": data_source_uuid, "external_id": external_id}
        return await self._run(self._find_object_flow(_CUSTOMERS, payload))

    async def iter_customers(
        self,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every customer matching the filters, page by page."""
        params = _filters(data_source_uuid=data_source_uuid, external_id=external_id)
        async for entry in self._iterate("/v1/customers", "entries", params, per_page):
            yield entry

    async def search_customers(self, email: str) -> list[dict[str, Any]]:
        """GET /v1/customers/search?email= ([] when none)."""
        return await self._run(self._search_customers_flow(email))

    async def upsert_customer(self, payload: Mapping[str, Any]) -> WriteOutcome:
        """Create the customer or PATCH the existing one."""
        return await self._run(self._upsert_flow(_CUSTOMERS, payload))

    async def merge_customers(self, from_: str | Mapping[str, Any], into: str | Mapping[str, Any]) -> None:
        """POST /v1/customers/merges."""
        await self._run(self._merge_flow(from_, into))

    async def create_plan(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/plans once in effect."""
        return await self._run(self._create_object_flow(_PLANS, payload))

    async def update_plan(self, uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /v1/plans/{uuid}."""
        return await self._run(self._update_object_flow(_PLANS, uuid, fields))

    async def find_plan(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The plan with this external id in this data source, or None."""
        payload = {"data_source_uuid": data_source_uuid, "external_id": external_id}
        return await self._run(self._find_object_flow(_PLANS, payload))

    async def iter_plans(
        self,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every plan matching the filters, page by page."""
        params = _filters(data_source_uuid=data_source_uuid, external_id=external_id)
        async for entry in self._iterate("/v1/plans", "plans", params, per_page):
            yield entry

    async def upsert_plan(self, payload: Mapping[str, Any]) -> WriteOutcome:
        """Create the plan or PATCH the existing one."""
        return await self._run(self._upsert_flow(_PLANS, payload))

    async def import_invoices(
        self, customer_uuid: str, invoices: Sequence[Mapping[str, Any]]
    ) -> InvoiceImportResult:
        """Import invoices with per-invoice outcomes; existing invoices count as done."""
        return await self._run(self._import_invoices_flow(customer_uuid, invoices))

    async def find_invoice(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        """The invoice with this external id in this data source, or None."""
        return await self._run(self._find_invoice_flow({"data_source_uuid": data_source_uuid}, external_id))

    async def iter_invoices(
        self,
        data_source_uuid: str | None = None,
        customer_uuid: str | None = None,
        external_id: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every invoice matching the filters, page by page."""
        params = _filters(
            data_source_uuid=data_source_uuid, customer_uuid=customer_uuid, external_id=external_id
        )
        async for entry in self._iterate("/v1/invoices", "invoices", params, per_page):
            yield entry

    async def delete_invoice(self, uuid: str) -> None:
        """DELETE /v1/invoices/{uuid}."""
        await self._run(self._delete_invoice_flow(uuid))

    async def add_line_item(self, invoice_uuid: str, line_item: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/import/invoices/{uuid}/line_items once in effect."""
        return await self._run(self._add_line_item_flow(invoice_uuid, line_item))

    async def create_json_import(self, data_source_uuid: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST a bulk JSON import (raises `BulkImportUnsupportedError` on 404/405)."""
        return await self._run(self._create_json_import_flow(data_source_uuid, payload))

    async def get_json_import(self, data_source_uuid: str, import_id: str) -> dict[str, Any]:
        """The status of a bulk JSON import."""
        return await self._run(self._get_json_import_flow(data_source_uuid, import_id))

    async def run_json_import(
        self,
        data_source_uuid: str,
        payload: Mapping[str, Any],
        *,
        poll_interval: float = 2.0,
        timeout: float = 900.0,
    ) -> dict[str, Any]:
        """Submit a bulk import (or follow the one already submitted) until completed."""
        return await self._run(self._run_json_import_flow(data_source_uuid, payload, poll_interval, timeout))

    async def _iterate(
        self, path: str, list_key: str, params: dict[str, Any], per_page: int
    ) -> AsyncIterator[dict[str, Any]]:
        query: dict[str, Any] | None = {**params, "per_page": min(per_page, MAX_PER_PAGE)}
        while query is not None:
            body = await self._run(self._page_flow(path, query))
            for entry in body.get(list_key) or []:
                yield entry
            query = _next_page_params(query, body)


# --------------------------------------------------------------------------------------------
# Small pure helpers


def fields_to_update(
    intended: Mapping[str, Any], existing: Mapping[str, Any], *, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The fields of `intended` whose value differs from `existing` (what a PATCH must send).

    Timestamps compare as instants (`"2016-10-01 23:55:00 UTC"` equals `"2016-10-01T23:55:00.000Z"`),
    and an empty string equals null, because the API echoes both forms.
    """
    return {
        key: value
        for key, value in intended.items()
        if key not in skip and not _same_value(value, existing.get(key))
    }


def _same_value(intended: Any, actual: Any) -> bool:
    if intended in (None, "") and actual in (None, ""):
        return True
    left, right = _as_instant(intended), _as_instant(actual)
    if left is not None and right is not None:
        return left == right
    if isinstance(intended, str) and isinstance(actual, str):
        return intended.strip() == actual.strip()
    if isinstance(intended, (int, float, Decimal)) and isinstance(actual, (int, float, Decimal)):
        return float(intended) == float(actual)
    return bool(intended == actual)


_TIMESTAMP_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _as_instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not _TIMESTAMP_PREFIX.match(value.strip()):
        return None
    text = value.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_same_object(entry: Mapping[str, Any], data_source_uuid: str, external_id: str) -> bool:
    # A merged customer carries several data sources and external ids; any pair may identify it.
    sources = {entry.get("data_source_uuid"), *(entry.get("data_source_uuids") or [])}
    ids = {entry.get("external_id"), *(entry.get("external_ids") or [])}
    return data_source_uuid in sources and external_id in {str(i) for i in ids if i is not None}


def _next_page_params(params: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any] | None:
    # `has_more` decides, not the cursor: a finished search once came back with a non-null cursor.
    if not body.get("has_more") or not body.get("cursor"):
        return None
    if body["cursor"] == params.get("cursor"):
        return None  # a server that ignores the cursor would hand out the same page forever
    return {**params, "cursor": body["cursor"]}


def _filters(**filters: str | None) -> dict[str, Any]:
    return {key: value for key, value in filters.items() if value is not None}


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _customer_ref(ref: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"customer_uuid": ref} if isinstance(ref, str) else dict(ref)


def _json_import_path(data_source_uuid: str) -> str:
    return f"/v1/data_sources/{data_source_uuid}/json_imports"


def _bulk_unsupported(error: ChartMogulError) -> BulkImportUnsupportedError:
    return BulkImportUnsupportedError(
        f"this server has no bulk JSON import endpoint ({error.message})",
        status=error.status,
        method=error.method,
        path=error.path,
    )


def _match_invoice_errors(
    pending: Sequence[Mapping[str, Any]], invoice_errors: Sequence[InvoiceError]
) -> dict[str, InvoiceError]:
    """Pair each per-invoice complaint with the invoice it is about: by external id, else position."""
    by_ext = {e.external_id: e for e in invoice_errors if e.external_id}
    matched: dict[str, InvoiceError] = {}
    for index, invoice in enumerate(pending):
        ext = str(invoice["external_id"])
        if ext in by_ext:
            matched[ext] = by_ext[ext]
        else:
            positional = next((e for e in invoice_errors if not e.external_id and e.index == index), None)
            if positional is not None:
                matched[ext] = positional
    return matched


def _describe_errors(errors: Any) -> str:
    if isinstance(errors, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    return str(errors)


__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncChartMogulClient",
    "ChartMogulClient",
    "ClientSettings",
    "InvoiceImportResult",
    "WriteOutcome",
    "fields_to_update",
    "normalise_base_url",
]
