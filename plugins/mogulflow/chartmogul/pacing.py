"""Client-side pacing: at most N request starts per second, shared by every thread and task.

ChartMogul allows 40 requests per second per account and answers 503 above 20 parallel
connections (../shared/chartmogul-api.md §2). Pacing ourselves below that is cheaper than being
told off and retrying, so every request of a client first reserves a start slot here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class RateLimiter:
    """Spaces request starts at least `1 / requests_per_second` apart (a virtual-schedule limiter).

    Thread-safe and event-loop-agnostic: `reserve()` only does arithmetic under a lock and
    returns how long the caller must wait, so a sync client sleeps with `time.sleep` and an
    async client with `asyncio.sleep`, and both may share one limiter (and one budget).

    The schedule advances from the previously granted slot, not from when a sleeper woke up,
    so oversleeping by a few milliseconds does not erode sustained throughput; and a slot is
    never granted in the past, so an idle spell does not build up a burst.
    """

    def __init__(self, requests_per_second: float, *, clock: Clock = time.monotonic) -> None:
        if requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be positive, got {requests_per_second!r}")
        self.requests_per_second = requests_per_second
        self._interval = 1.0 / requests_per_second
        self._clock = clock
        self._next_slot = float("-inf")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(requests_per_second={self.requests_per_second!r})"

    def reserve(self) -> float:
        """Claim the next start slot; return the seconds to wait before starting (0 if none)."""
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot, now)
            self._next_slot = slot + self._interval
            return slot - now

    def pause(self, seconds: float) -> None:
        """Grant no slot for the next `seconds` (the server said to back off, e.g. a 429)."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block the calling thread until its start slot."""
        delay = self.reserve()
        if delay > 0:
            sleep(delay)

    async def acquire_async(self) -> None:
        """Wait (without blocking the event loop) until the calling task's start slot."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


#: Consecutive un-refused requests after which a shrunk connection limit grows back by one.
GROW_AFTER_SUCCESSES = 20


class ConnectionSlots:
    """Bounds the requests in flight; shrinks when the server says "too many", regrows slowly.

    `max_connections` is the ceiling. Each 503 (ChartMogul's answer to too many parallel
    connections) takes one slot away, down to one; `GROW_AFTER_SUCCESSES` requests in a row that
    were not refused give one back (additive increase, multiplicative-ish decrease). So a client
    configured above what the account allows settles at what the server accepts instead of
    burning its retries on 503s. Thread-safe.
    """

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        self.max_connections = max_connections
        self.limit = max_connections
        self.in_flight = 0
        self._successes = 0
        self._condition = threading.Condition()

    def __repr__(self) -> str:
        return f"ConnectionSlots(limit={self.limit}/{self.max_connections}, in_flight={self.in_flight})"

    def acquire(self) -> None:
        """Wait for a free slot and take it."""
        with self._condition:
            while self.in_flight >= self.limit:
                self._condition.wait()
            self.in_flight += 1

    def release(self, *, overloaded: bool = False) -> None:
        """Give the slot back; `overloaded` when the server refused for too many connections."""
        with self._condition:
            self.in_flight -= 1
            if overloaded:
                self._successes = 0
                self.limit = max(1, self.limit - 1)
            else:
                self._successes += 1
                if self._successes >= GROW_AFTER_SUCCESSES and self.limit < self.max_connections:
                    self._successes = 0
                    self.limit += 1
            self._condition.notify_all()
