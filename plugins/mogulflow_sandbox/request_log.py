"""The request log: every ``/v1`` request the sandbox saw, its answer, its fault and what it changed.

What it changed: a `Change` per object of the account it created, updated, deleted or merged.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

MAX_LOGGED_REQUESTS = 100_000
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Change:
    """One object a request changed: ``what`` is ``customer``, ``plan`` or ``invoice``; ``change`` is
    ``created``, ``updated``, ``deleted`` or ``merged`` (a customer merged into another one)."""

    what: str
    data_source_uuid: str
    external_id: str
    change: str


#: The changes of the ``/v1`` request being answered (the gateway sets it; None outside a request).
_current_changes: contextvars.ContextVar[list[Change] | None] = contextvars.ContextVar(
    "sandbox_current_changes", default=None
)


@contextmanager
def collecting_changes() -> Iterator[list[Change]]:
    """Collect what the account's methods change while one request is answered."""
    changes: list[Change] = []
    token = _current_changes.set(changes)
    try:
        yield changes
    finally:
        _current_changes.reset(token)


def note_change(what: str, data_source_uuid: str, external_id: str, change: str) -> None:
    """Record one change for the request being answered (a no-op outside a request: a test's own calls)."""
    changes = _current_changes.get()
    if changes is not None:
        changes.append(Change(what, data_source_uuid, external_id, change))


@dataclass(frozen=True)
class LoggedRequest:
    """One request: ``status`` is None when the connection was dropped; ``applied`` is True for a write
    the API carried out (whatever the client was then told); ``fault`` names the fault that fired;
    ``changes`` what the account changed while it was answered (a JSON import's or a merge's records
    show on the request during which they fell due, usually a later poll)."""

    seq: int
    method: str
    path: str
    query: str
    status: int | None
    applied: bool
    fault: str | None
    duration_seconds: float
    changes: tuple[Change, ...] = ()

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
        changes: tuple[Change, ...] = (),
    ) -> LoggedRequest:
        """Record one finished request."""
        with self._lock:
            entry = LoggedRequest(
                self._next_seq, method, path, query, status, applied, fault, duration, changes
            )
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
