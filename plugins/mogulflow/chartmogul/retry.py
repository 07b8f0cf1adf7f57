"""Retry policy in small, overridable pieces: which failures to retry, how long to wait, when to stop.

Modelled on dlt's `retry.py`: defaults are named module constants, conditions are small
predicates, and the wait honours `Retry-After` when a server sends one (ChartMogul documents no
such header, so it is never required). A `CircuitBreaker` stops a whole batch early when the API
keeps refusing, instead of letting thousands of rows fail one by one.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

#: HTTP statuses worth another try: rate limit, and the 5xx family ChartMogul's own clients retry.
DEFAULT_RETRY_STATUS: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: Error statuses that prove the server refused a request before acting on it, so even a create
#: may simply be sent again: 429 (rate limit) and 503 (ChartMogul's "too many parallel
#: connections"). 500/502/504 may come after the write happened and are never in this set.
DEFAULT_NOT_APPLIED_STATUS: frozenset[int] = frozenset({429, 503})
#: Attempts per request, the first one included.
DEFAULT_MAX_ATTEMPTS = 6
#: First backoff, in seconds; it doubles per attempt up to `DEFAULT_MAX_DELAY`.
DEFAULT_BASE_DELAY = 0.5
DEFAULT_MAX_DELAY = 30.0
#: Wall-clock budget for one request including its retries; a stuck API fails the task, not hangs it.
DEFAULT_MAX_ELAPSED = 180.0
#: A `Retry-After` longer than this is capped: we would rather fail than sleep for an hour.
DEFAULT_MAX_RETRY_AFTER = 120.0
#: Consecutive requests that exhausted their retries before the circuit opens.
DEFAULT_CIRCUIT_THRESHOLD = 5
#: How long an open circuit refuses requests before letting one probe through.
DEFAULT_CIRCUIT_COOLDOWN = 60.0

#: Network failures after which the request certainly never reached the server's application.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
#: Network failures worth retrying (the request may or may not have been processed).
RETRIABLE_NETWORK_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def is_retriable_status(status: int, retry_status: frozenset[int] = DEFAULT_RETRY_STATUS) -> bool:
    """True when an HTTP status is worth another attempt."""
    return status in retry_status


def is_retriable_exception(exc: BaseException) -> bool:
    """True when a transport failure (timeout, refused or dropped connection) is worth another attempt."""
    return isinstance(exc, RETRIABLE_NETWORK_ERRORS)


def request_was_not_sent(exc: BaseException) -> bool:
    """True when a transport failure happened before the server could have acted on the request."""
    return isinstance(exc, NOT_SENT_ERRORS)


def status_means_not_applied(status: int, not_applied: frozenset[int] = DEFAULT_NOT_APPLIED_STATUS) -> bool:
    """True when an error status says the server refused the request before acting on it.

    A create answered with such a status is re-sent directly; any other 5xx may have come after
    the write happened, so the object is looked up before a create is sent again.
    """
    return status in not_applied


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def exponential_backoff(
    *,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield waits for retry 1, 2, 3, ...: capped exponential with "full jitter" (AWS style).

    Full jitter (a uniform draw in [cap/2, cap]) spreads parallel workers that failed together, so
    they do not come back together and fail again.
    """
    draw = (rng or random).uniform
    attempt = 0
    while True:
        ceiling = min(max_delay, base_delay * (2**attempt))
        yield draw(ceiling / 2, ceiling)
        attempt += 1


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried. Override a field, or subclass and override a method."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    max_elapsed: float = DEFAULT_MAX_ELAPSED
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    retry_status: frozenset[int] = DEFAULT_RETRY_STATUS
    #: set to `frozenset({429})` to treat a 503 as possibly applied too (one lookup more per 503)
    not_applied_status: frozenset[int] = DEFAULT_NOT_APPLIED_STATUS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def should_retry_status(self, status: int) -> bool:
        """True when a response with this status is worth another attempt."""
        return is_retriable_status(status, self.retry_status)

    def proves_not_applied(self, status: int) -> bool:
        """True when a create answered with this status certainly did not happen."""
        return status_means_not_applied(status, self.not_applied_status)

    def should_retry_exception(self, exc: BaseException) -> bool:
        """True when this transport failure is worth another attempt."""
        return is_retriable_exception(exc)

    def waits(self, rng: random.Random | None = None) -> Iterator[float]:
        """The wait generator for one request's retries."""
        return exponential_backoff(base_delay=self.base_delay, max_delay=self.max_delay, rng=rng)

    def wait_for(self, backoff: float, retry_after: float | None) -> float:
        """The wait before the next attempt: the server's `Retry-After` if given (capped), else backoff."""
        if retry_after is None:
            return backoff
        return min(retry_after, self.max_retry_after)


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive requests exhausted their retries; thread-safe.

    While open, requests fail at once with `CircuitOpenError` for `cooldown` seconds; then one
    probe request is let through (half-open): its success closes the circuit, its failure
    re-opens it. A success anywhere resets the count, so scattered failures never trip it.
    """

    threshold: int = DEFAULT_CIRCUIT_THRESHOLD
    cooldown: float = DEFAULT_CIRCUIT_COOLDOWN
    clock: Callable[[], float] = time.monotonic
    _consecutive_failures: int = field(default=0, init=False)
    _opened_at: float | None = field(default=None, init=False)
    _probe_in_flight: bool = field(default=False, init=False)
    _last_failure: str = field(default="", init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def check(self) -> str | None:
        """Return None when a request may go ahead, else why the circuit refuses it."""
        with self._lock:
            if self._opened_at is None:
                return None
            if self.clock() - self._opened_at >= self.cooldown and not self._probe_in_flight:
                self._probe_in_flight = True
                return None
            return (
                f"the ChartMogul API refused {self._consecutive_failures} requests in a row even after "
                f"retries (last: {self._last_failure}); not sending more for {self.cooldown:.0f} s"
            )

    def record_success(self) -> None:
        """A request got an answer (any non-retriable outcome counts): close the circuit."""
        with self._lock:
            self._consecutive_failures = 0
            self._opened_at = None
            self._probe_in_flight = False

    def record_failure(self, description: str) -> None:
        """A request exhausted its retries; open the circuit once that happened `threshold` times."""
        with self._lock:
            self._consecutive_failures += 1
            self._last_failure = description
            self._probe_in_flight = False
            if self._consecutive_failures >= self.threshold:
                self._opened_at = self.clock()

    @property
    def is_open(self) -> bool:
        """True while the circuit refuses requests."""
        with self._lock:
            return self._opened_at is not None
