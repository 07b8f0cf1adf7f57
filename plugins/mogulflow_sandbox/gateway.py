"""The front door of ``/v1``: authentication, fault injection and the request log, as ASGI middleware.

Everything else (``/_sandbox/*``) passes straight through: no auth, no faults, not logged.

Dropping a connection: for a fault that must leave the client with no answer at all, the gateway
aborts the TCP transport of uvicorn's request cycle (reached through the server's ``send``
callable). Under a server that does not expose it, it falls back to the closest honest
equivalent: response headers promising a body that never comes, then a closed connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mogulflow_sandbox.api_errors import UNAUTHORIZED
from mogulflow_sandbox.faults import (
    DROPPED_AFTER,
    RATE_LIMIT_MESSAGE,
    TOO_MANY_PARALLEL_MESSAGE,
    FaultInjector,
    Rejection,
)
from mogulflow_sandbox.request_log import WRITE_METHODS, Change, RequestLog, collecting_changes

API_PREFIX = "/v1"
JSON_HEADERS = [(b"content-type", b"application/json")]
#: nginx answers gateway errors with an HTML page, not JSON; clients must cope
NGINX_ERROR_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class ApiGateway:
    """Wraps the routes: checks the API key, injects faults and logs each ``/v1`` request."""

    def __init__(
        self, app: ASGIApp, injector: FaultInjector, request_log: RequestLog, api_key: str | None
    ) -> None:
        self.app = app
        self.injector = injector
        self.request_log = request_log
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        method: str = scope["method"]
        outcome = _Outcome()

        def log_once() -> None:
            if not outcome.logged:
                outcome.logged = True
                query = scope.get("query_string", b"").decode("latin-1")
                duration = time.monotonic() - started
                self.request_log.add(
                    method,
                    scope["path"],
                    query,
                    outcome.status,
                    outcome.applied,
                    outcome.fault,
                    duration,
                    tuple(outcome.changes),
                )

        async def send_logged(message: Message) -> None:
            # The log entry is written before the last byte goes out, so a client that has its answer
            # (or lost its connection) can rely on finding the request in the log.
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                log_once()
            await send(message)

        try:
            with collecting_changes() as changes:
                outcome.changes = changes
                drop = await self._serve(scope, receive, send_logged, method, outcome)
            if drop:
                log_once()
                await _drop_connection(send)
        finally:
            self.injector.release()
            log_once()

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, method: str, outcome: _Outcome
    ) -> bool:
        """Answer one request through ``send``; True when the connection must be dropped instead."""
        rejection = self.injector.admit()
        if rejection is not None:
            message = RATE_LIMIT_MESSAGE if rejection.status == 429 else TOO_MANY_PARALLEL_MESSAGE
            body = {"code": rejection.status, "message": message, "param": None}
            await self._reject(send, outcome, rejection, _json_bytes(body), JSON_HEADERS, retry_after=True)
            return False
        if not self._is_authorized(scope):
            await _send_response(send, 401, _json_bytes(UNAUTHORIZED.body), JSON_HEADERS)
            return False
        latency = self.injector.latency()
        if latency:
            await asyncio.sleep(latency)
        rejection = self.injector.error_before()
        if rejection is not None:
            await self._reject(send, outcome, rejection, *_error_page(rejection.status), retry_after=False)
            return False
        if method not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return False
        # A write is answered only once we know whether a fault replaces the answer, so buffer it.
        buffered: list[Message] = []

        async def buffer(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
            buffered.append(message)

        await self.app(scope, receive, buffer)
        outcome.applied = outcome.status is not None and outcome.status < 400
        rejection = self.injector.after_write() if outcome.applied else None
        if rejection is None:
            for buffered_message in buffered:
                await send(buffered_message)
            return False
        if rejection.fault == DROPPED_AFTER:
            outcome.status, outcome.fault = None, rejection.fault
            return True
        await self._reject(send, outcome, rejection, *_error_page(rejection.status), retry_after=False)
        return False

    async def _reject(
        self,
        send: Send,
        outcome: _Outcome,
        rejection: Rejection,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        retry_after: bool,
    ) -> None:
        outcome.status, outcome.fault = rejection.status, rejection.fault
        header = self.injector.retry_after_header() if retry_after else None
        await _send_response(send, rejection.status, body, headers + ([header] if header else []))

    def _is_authorized(self, scope: Scope) -> bool:
        """HTTP Basic, API key as user name, any password; without ``--api-key`` any non-empty key."""
        key = _basic_auth_user(scope)
        if not key:
            return False
        return self.api_key is None or key == self.api_key


class _Outcome:
    """What happened to one request, filled in as it goes (for the log)."""

    __slots__ = ("applied", "changes", "fault", "logged", "status")

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.status: int | None = None
        self.applied = False
        self.fault: str | None = None
        self.logged = False


def _is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _basic_auth_user(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, encoded = value.decode("latin-1").partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[0]
    return None


def _json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _error_page(status: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A 500 as the API's JSON, 502/503/504 as nginx's HTML page."""
    if status == 500:
        return _json_bytes({"code": 500, "message": "Internal Server Error", "param": None}), JSON_HEADERS
    page = NGINX_ERROR_PAGE.format(status=status, reason=REASONS[status]).encode()
    return page, [(b"content-type", b"text/html")]


async def _send_response(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drop_connection(send: Send) -> None:
    """Close the client's connection without a byte of answer (see the module docstring)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        # let the server notice the lost connection, so it does not try to answer for us
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
