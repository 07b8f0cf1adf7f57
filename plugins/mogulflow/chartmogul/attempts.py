"""One call's attempts, and a flow driven down to the two things a front end does: send and wait.

`Attempts` is the retry bookkeeping of one `Call`: after each response or transport failure it
says done, wait and try again, or fail (and keeps the circuit breaker and the pace informed).
`FlowRun` expands a flow's calls into their attempts, so the sync and the async client only
perform `Send` (one HTTP request within their connection slots and pace) and `Pause` (a sleep):
every decision about a request is made here, once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import httpx

from mogulflow.chartmogul.errors import (
    ChartMogulError,
    CircuitOpenError,
    TransientError,
    error_for_status,
    parse_error_body,
)
from mogulflow.chartmogul.flows import Call, Flow, Pause
from mogulflow.chartmogul.pacing import RateLimiter
from mogulflow.chartmogul.retry import CircuitBreaker, parse_retry_after, request_was_not_sent
from mogulflow.chartmogul.settings import ClientSettings

log = logging.getLogger(__name__)

#: The status of a rate-limit refusal, the one whose `Retry-After` holds every request of a client.
RATE_LIMITED_STATUS = 429
#: Statuses below this are answers; from it on they are errors (the 4xx and 5xx families).
FIRST_ERROR_STATUS = 400

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """One HTTP attempt as a front end performs it: a `Call` with its body already encoded."""

    method: str
    path: str
    params: Mapping[str, Any] | None
    content: bytes | None


#: What a front end reports after a step: the response or the failure of a `Send`, None after a `Pause`.
Received = httpx.Response | Exception | None
#: The low-level steps of a flow (or of one call), answered with what the front end received.
Steps = Generator[Send | Pause, Received, T]


@dataclass
class Attempts:
    """Retry bookkeeping for one `Call`; says after each outcome: done, wait and retry, or fail."""

    call: Call
    settings: ClientSettings
    limiter: RateLimiter
    breaker: CircuitBreaker
    started: float = field(default_factory=time.monotonic)
    attempt: int = 0

    def __post_init__(self) -> None:
        self._waits = self.settings.retry.waits()

    @property
    def secret(self) -> str:
        """The API key, to be masked wherever an error text might echo it."""
        return self.settings.api_key

    def steps(self) -> Steps[Any]:
        """Send the call until it is answered; return the decoded JSON body (or raise the error)."""
        call = self.call
        self.check_circuit()
        send = Send(call.method, call.path, call.params, encode(call.body) if call.body is not None else None)
        while True:
            self.attempt += 1
            received = yield send
            if isinstance(received, httpx.Response):
                answer, wait = self.on_response(received)
                if wait is None:
                    return answer
            elif isinstance(received, Exception):
                wait = self.on_exception(received)
            else:
                raise TypeError(f"a send must be answered with a response or an exception, got {received!r}")
            yield Pause(wait)

    def check_circuit(self) -> None:
        """Raise `CircuitOpenError` at once when the API has been refusing everything."""
        reason = self.breaker.check()
        if reason is not None:
            raise CircuitOpenError(reason, method=self.call.method, path=self.call.path)

    def on_response(self, response: httpx.Response) -> tuple[Any, float | None]:
        """Return (decoded body, None) on success, (None, wait) to retry; raise when it is over."""
        status = response.status_code
        if status < FIRST_ERROR_STATUS:
            self.breaker.record_success()
            return decode(response), None
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
        if status == RATE_LIMITED_STATUS and retry_after is not None:
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
        """The wait before the next attempt, or None when attempts or time are used up."""
        policy = self.settings.retry
        if self.attempt >= policy.max_attempts:
            return None
        wait = policy.wait_for(next(self._waits), retry_after)
        if time.monotonic() - self.started + wait > policy.max_elapsed:
            return None
        return wait


class FlowRun(Generic[T]):
    """A flow driven down to `Send` and `Pause`: iterate the steps, `report` what each one received.

    A call's error is thrown into the flow (which may look the object up, or give up); an error the
    flow does not handle ends the iteration by propagating. After the last step, `result` holds
    the flow's value.
    """

    result: T

    def __init__(self, flow: Flow[T], attempts_for: Callable[[Call], Attempts]) -> None:
        self._steps = _expand(flow, attempts_for)
        self._received: Received = None

    def __iter__(self) -> Iterator[Send | Pause]:
        return self

    def __next__(self) -> Send | Pause:
        # Each report answers one step: never hand an old response to the next one.
        received, self._received = self._received, None
        try:
            return self._steps.send(received)
        except StopIteration as stop:
            self.result = stop.value
            raise

    def report(self, received: Received) -> None:
        """What the step just performed received: a response, a failure, or None after a pause."""
        self._received = received


def _expand(flow: Flow[T], attempts_for: Callable[[Call], Attempts]) -> Steps[T]:
    """The flow's steps with each `Call` replaced by its attempts; returns the flow's value."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Pause):
                yield step
                step = flow.send(None)
                continue
            try:
                answer = yield from attempts_for(step).steps()
            except ChartMogulError as error:
                step = flow.throw(error)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Bodies in and out


def encode(body: object) -> bytes:
    """A JSON request body, compact; dates, datetimes and decimals as the API expects them."""
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def decode(response: httpx.Response) -> Any:
    """A response's JSON body; {} when it is empty or not JSON (a 204, a proxy's page)."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return {}


def _json_default(value: object) -> object:
    """A value `json` cannot encode itself: naive datetimes as UTC, whole decimals as integers."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _describe_transport_error(exc: httpx.TransportError, secret: str) -> str:
    """`ConnectError: ...` with any echo of the key masked (httpx may quote the URL it failed on)."""
    text = f"{type(exc).__name__}: {str(exc) or 'no detail'}"
    return text.replace(secret, "***") if secret else text
