"""Fault injection: the bad days of a real API, on demand and reproducibly.

`Faults` says what to inject; `FaultInjector` makes the per-request decisions (thread-safe, seeded).
Faults touch ``/v1/*`` only. Order for one request: too many in flight (503) → over the rate (429)
→ latency → random error before the handler (500/502/503/504, nothing applied) → handler →
for writes that succeeded: random error after (500/502/504) or dropped connection (no answer).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

RATE_LIMITED = "rate_limited"
TOO_MANY_PARALLEL = "too_many_parallel"
ERROR_BEFORE = "error_before"
ERROR_AFTER = "error_after"
DROPPED_AFTER = "dropped_after"

ERROR_BEFORE_STATUSES = (500, 502, 503, 504)
ERROR_AFTER_STATUSES = (500, 502, 504)
RATE_LIMIT_MESSAGE = "Your request rate has exceeded our rate limit."
TOO_MANY_PARALLEL_MESSAGE = (
    "Too many parallel connections: do not exceed the allowed number of parallel requests."
)


@dataclass(frozen=True)
class Faults:
    """What to inject. The defaults inject nothing."""

    #: requests per second accepted in any one-second sliding window; above → 429 (None = no limit)
    rate_limit_per_second: float | None = None
    #: ``Retry-After`` on 429/503 answers, in seconds (None = no header, as the real API)
    retry_after: float | None = None
    #: send ``Retry-After`` as an HTTP-date instead of seconds
    retry_after_http_date: bool = False
    #: requests allowed in flight at once; one more → 503 (None = no limit; the real API says 20)
    max_parallel: int | None = None
    #: probability of a 500/502/503/504 before the request is applied
    error_rate_before: float = 0.0
    #: probability, for a write that was applied, of answering 500/502/504 anyway
    error_rate_after: float = 0.0
    #: probability, for a write that was applied, of closing the connection without any answer
    drop_rate_after: float = 0.0
    #: added to every request, plus a uniform random ``latency_jitter_seconds``
    latency_seconds: float = 0.0
    latency_jitter_seconds: float = 0.0
    #: seed of the random decisions (None = unseeded)
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate_before", "error_rate_after", "drop_rate_after"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], not {rate}")
        if self.error_rate_after + self.drop_rate_after > 1.0:
            raise ValueError("error_rate_after + drop_rate_after must not exceed 1")
        for name in ("latency_seconds", "latency_jitter_seconds", "retry_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            raise ValueError("rate_limit_per_second must be > 0")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ValueError("max_parallel must be >= 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Faults:
        """Build from JSON-like values (``PUT /_sandbox/faults``); unknown keys are a `ValueError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault options: {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """The options as JSON values."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Rejection:
    """A request answered by a fault before reaching the API: which fault and with what status."""

    fault: str
    status: int


class FaultInjector:
    """Makes the fault decisions for one server; safe to call from the event loop and from tests."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self.set_faults(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Switch faults; the random generator is re-seeded and the rate window emptied."""
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)
            self._accepted_at: deque[float] = deque()

    def admit(self) -> Rejection | None:
        """Count a request in flight and decide whether parallelism or rate rejects it (then 503/429)."""
        with self._lock:
            self._in_flight += 1
            faults = self._faults
            if faults.max_parallel is not None and self._in_flight > faults.max_parallel:
                return Rejection(TOO_MANY_PARALLEL, 503)
            if faults.rate_limit_per_second is not None:
                now = time.monotonic()
                while self._accepted_at and self._accepted_at[0] <= now - 1.0:
                    self._accepted_at.popleft()
                if len(self._accepted_at) >= faults.rate_limit_per_second:
                    return Rejection(RATE_LIMITED, 429)
                self._accepted_at.append(now)
            return None

    def release(self) -> None:
        """The request admitted by `admit` has finished."""
        with self._lock:
            self._in_flight -= 1

    def latency(self) -> float:
        """Seconds to hold this request."""
        with self._lock:
            faults = self._faults
            jitter = (
                self._random.uniform(0.0, faults.latency_jitter_seconds)
                if faults.latency_jitter_seconds
                else 0.0
            )
            return faults.latency_seconds + jitter

    def error_before(self) -> Rejection | None:
        """Whether this request fails before it is applied, and with which 5xx."""
        with self._lock:
            if self._faults.error_rate_before and self._random.random() < self._faults.error_rate_before:
                return Rejection(ERROR_BEFORE, self._random.choice(ERROR_BEFORE_STATUSES))
            return None

    def after_write(self) -> Rejection | None:
        """For an applied write: an error answer (``error_after``), no answer (``dropped_after``) or None."""
        with self._lock:
            faults = self._faults
            if not faults.error_rate_after and not faults.drop_rate_after:
                return None
            roll = self._random.random()
            if roll < faults.error_rate_after:
                return Rejection(ERROR_AFTER, self._random.choice(ERROR_AFTER_STATUSES))
            if roll < faults.error_rate_after + faults.drop_rate_after:
                return Rejection(DROPPED_AFTER, 0)
            return None

    def retry_after_header(self) -> tuple[bytes, bytes] | None:
        """The ``Retry-After`` header to send with a 429/503, or None."""
        faults = self._faults
        if faults.retry_after is None:
            return None
        if faults.retry_after_http_date:
            value = formatdate(time.time() + faults.retry_after, usegmt=True)
        else:
            value = f"{faults.retry_after:g}"
        return (b"retry-after", value.encode())
