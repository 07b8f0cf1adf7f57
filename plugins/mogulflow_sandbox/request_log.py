"""The request log: every ``/v1`` request the sandbox saw, its answer and the fault that fired, if any."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

MAX_LOGGED_REQUESTS = 100_000
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class LoggedRequest:
    """One request: ``status`` is None when the connection was dropped; ``applied`` is True for a write
    the API carried out (whatever the client was then told); ``fault`` names the fault that fired."""

    seq: int
    method: str
    path: str
    query: str
    status: int | None
    applied: bool
    fault: str | None
    duration_seconds: float

    def to_api(self) -> dict[str, Any]:
        """As JSON for ``GET /_sandbox/requests``."""
        return dataclasses.asdict(self)


class RequestLog:
    """Thread-safe, bounded (the oldest entries go after `MAX_LOGGED_REQUESTS`)."""

    def __init__(self, max_entries: int = MAX_LOGGED_REQUESTS) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=max_entries)
        self._next_seq = 1

    def add(
        self,
        method: str,
        path: str,
        query: str,
        status: int | None,
        applied: bool,
        fault: str | None,
        duration: float,
    ) -> LoggedRequest:
        """Record one finished request."""
        with self._lock:
            entry = LoggedRequest(self._next_seq, method, path, query, status, applied, fault, duration)
            self._next_seq += 1
            self._entries.append(entry)
            return entry

    def entries(self) -> list[LoggedRequest]:
        """A copy of the log, oldest first."""
        with self._lock:
            return list(self._entries)

    def fault_counts(self) -> dict[str, int]:
        """How often each fault fired."""
        with self._lock:
            return dict(Counter(entry.fault for entry in self._entries if entry.fault is not None))

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
