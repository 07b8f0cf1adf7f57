"""A tiny in-memory ChartMogul for unit tests, served through `httpx.MockTransport`.

Only the endpoints the transport's idempotency rules touch. Faults are scripted per request by a
`FaultScript`, so a test can say exactly "the 2nd POST lands, then its answer is lost".
The contract suite (test_contract.py) runs against the real sandbox over HTTP instead.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

ALREADY_CUSTOMER = "The external ID for this customer already exists in our system."
ALREADY_PLAN = "A plan with this identifier already exists in our system."
ALREADY_INVOICE = "The external ID for this invoice already exists in our system."

#: What can go wrong with one request: refused before acting, or acted-then-lost.
BEFORE_503 = "before_503"
BEFORE_429 = "before_429"
BEFORE_CONNECT_ERROR = "before_connect_error"
AFTER_500 = "after_500"
AFTER_DROP = "after_drop"
AFTER_TIMEOUT = "after_timeout"


@dataclass
class FaultScript:
    """Faults to inject, keyed by (method, path prefix): a list consumed one per matching request."""

    planned: dict[tuple[str, str], list[str | None]] = field(default_factory=dict)
    retry_after: str | None = None

    def add(self, method: str, path_prefix: str, *faults: str | None) -> None:
        """Queue faults for the next matching requests (None = let that one through)."""
        self.planned.setdefault((method, path_prefix), []).extend(faults)

    def next_for(self, request: httpx.Request) -> str | None:
        """The fault for this request, if one is queued."""
        for (method, prefix), faults in self.planned.items():
            if request.method == method and request.url.path.startswith(prefix) and faults:
                return faults.pop(0)
        return None


@dataclass
class FakeChartMogul:
    """In-memory state + router. `invoice_batch_mode`: "all_or_nothing" or "partial"."""

    api_key: str = "test-key-1234567890"
    faults: FaultScript = field(default_factory=FaultScript)
    invoice_batch_mode: str = "all_or_nothing"
    json_imports_supported: bool = True
    customers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    plans: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    invoices: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    json_imports: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that routes into this fake."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Route one request, applying any scripted fault."""
        self.requests.append((request.method, request.url.path))
        if request.headers.get("authorization") != httpx.BasicAuth(self.api_key, "")._auth_header:
            return httpx.Response(
                401, json={"code": 401, "message": "No valid API key provided", "param": None}
            )
        fault = self.faults.next_for(request)
        if fault == BEFORE_503:
            return httpx.Response(503, text="<html><title>503 Service Unavailable</title></html>")
        if fault == BEFORE_429:
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after else {}
            message = {
                "code": 429,
                "message": "Your request rate has exceeded our rate limit.",
                "param": None,
            }
            return httpx.Response(429, json=message, headers=headers)
        if fault == BEFORE_CONNECT_ERROR:
            raise httpx.ConnectError("connection refused", request=request)
        response = self._route(request)
        if fault == AFTER_500:
            return httpx.Response(500, json={"error": "Internal server error"})
        if fault == AFTER_DROP:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if fault == AFTER_TIMEOUT:
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    def count(self, method: str, path_prefix: str) -> int:
        """How many requests with this method reached a path starting with `path_prefix`."""
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):08d}"

    def _route(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.content else {}
        params = request.url.params
        routes: list[tuple[str, Callable[[], bool], Callable[[], httpx.Response]]] = [
            ("ping", lambda: path == "/v1/ping", lambda: httpx.Response(200, json={"data": "pong!"})),
            (
                "create customer",
                lambda: (method, path) == ("POST", "/v1/customers"),
                lambda: self._create(self.customers, body, "cus", ALREADY_CUSTOMER),
            ),
            (
                "list customers",
                lambda: (method, path) == ("GET", "/v1/customers"),
                lambda: self._list(self.customers, params, "entries"),
            ),
            (
                "create plan",
                lambda: (method, path) == ("POST", "/v1/plans"),
                lambda: self._create(self.plans, body, "pl", ALREADY_PLAN),
            ),
            (
                "list plans",
                lambda: (method, path) == ("GET", "/v1/plans"),
                lambda: self._list(self.plans, params, "plans"),
            ),
            ("patch", lambda: method == "PATCH", lambda: self._patch(path, body)),
            (
                "import invoices",
                lambda: method == "POST" and path.startswith("/v1/import/customers/"),
                lambda: self._import_invoices(body),
            ),
            (
                "list invoices",
                lambda: (method, path) == ("GET", "/v1/invoices"),
                lambda: self._list(self.invoices, params, "invoices"),
            ),
            (
                "json import",
                lambda: path.endswith("/json_imports") and method == "POST",
                lambda: self._create_json_import(body),
            ),
            (
                "json import status",
                lambda: "/json_imports/" in path and method == "GET",
                lambda: self._get_json_import(path.rsplit("/", 1)[-1]),
            ),
        ]
        for _name, matches, answer in routes:
            if matches():
                return answer()
        return httpx.Response(404, json={"detail": "Not Found"})

    def _create(
        self, table: dict[tuple[str, str], dict[str, Any]], body: dict[str, Any], prefix: str, duplicate: str
    ) -> httpx.Response:
        if not body.get("external_id"):
            return httpx.Response(422, json={"errors": {"external_id": "A unique external ID is required."}})
        key = (body["data_source_uuid"], body["external_id"])
        if key in table:
            return httpx.Response(422, json={"errors": {"external_id": duplicate}})
        table[key] = {**body, "uuid": self._new_id(prefix)}
        return httpx.Response(201, json=table[key])

    def _list(self, table: dict[tuple[str, str], dict[str, Any]], params: Any, key: str) -> httpx.Response:
        entries = [
            row
            for row in table.values()
            if all(
                row.get(name) == params[name]
                for name in ("data_source_uuid", "external_id")
                if name in params
            )
        ]
        return httpx.Response(200, json={key: entries, "has_more": False, "cursor": None, "total_pages": 1})

    def _patch(self, path: str, body: dict[str, Any]) -> httpx.Response:
        uuid = path.rsplit("/", 1)[-1]
        for table in (self.customers, self.plans):
            for row in table.values():
                if row["uuid"] == uuid:
                    row.update(body)
                    return httpx.Response(200, json=row)
        return httpx.Response(404, json={"error": "not found"})

    def _import_invoices(self, body: dict[str, Any]) -> httpx.Response:
        answers, failures = [], []
        for invoice in body["invoices"]:
            key = (invoice.get("data_source_uuid", ""), invoice["external_id"])
            if key in self.invoices:
                failures.append(
                    {"external_id": invoice["external_id"], "errors": {"external_id": ALREADY_INVOICE}}
                )
            elif invoice.get("currency") == "XXX":
                failures.append(
                    {"external_id": invoice["external_id"], "errors": {"currency": "Currency is invalid"}}
                )
            else:
                answers.append(invoice)
        if failures and self.invoice_batch_mode == "all_or_nothing":
            return httpx.Response(422, json={"invoices": failures})
        stored = []
        for invoice in answers:
            row = {**invoice, "uuid": self._new_id("inv"), "errors": {}}
            self.invoices[(invoice.get("data_source_uuid", ""), invoice["external_id"])] = row
            stored.append(row)
        if failures:
            return httpx.Response(422, json={"invoices": failures})
        return httpx.Response(201, json={"invoices": stored})

    def _create_json_import(self, body: dict[str, Any]) -> httpx.Response:
        if not self.json_imports_supported:
            return httpx.Response(404, json={"detail": "Not Found"})
        external_id = body["external_id"]
        if external_id in self.json_imports:
            return httpx.Response(422, json={"errors": {"external_id": "has already been taken"}})
        self.json_imports[external_id] = {"id": self._new_id("imp"), "external_id": external_id, "polls": 0}
        return httpx.Response(201, json={**self.json_imports[external_id], "status": "queued"})

    def _get_json_import(self, import_id: str) -> httpx.Response:
        found = self.json_imports.get(import_id)
        if found is None:
            return httpx.Response(404, json={"error": "Import not found"})
        found["polls"] += 1
        status = "completed" if found["polls"] >= 2 else "processing"
        return httpx.Response(200, json={**found, "status": status})
