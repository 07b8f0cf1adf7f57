"""Asynchronous work (merges, unmerges, JSON imports) waiting for its due time.

Nothing runs on a timer: the state applies whatever has fallen due at the start of every public
call, so the 202 comes first and the effect shows up a moment later, as with the real API.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

WorkKind = Literal["merge", "json_import"]


@dataclass(frozen=True, order=True)
class DueWork:
    """One piece of queued work; ordered by due time, then by the order it was queued in."""

    due_at: float
    order: int
    kind: WorkKind
    work_id: str


class WorkQueue:
    """The queued work, soonest first."""

    def __init__(self) -> None:
        self._heap: list[DueWork] = []
        self._order = itertools.count()

    def add(self, due_at: float, kind: WorkKind, work_id: str) -> None:
        """Queue ``work_id`` (a merge or import id) to be applied once ``due_at`` (epoch seconds) passes."""
        heapq.heappush(self._heap, DueWork(due_at, next(self._order), kind, work_id))

    def pop_due(self, now: float) -> Iterator[DueWork]:
        """Take the work due at ``now``, one at a time, soonest first."""
        while self._heap and self._heap[0].due_at <= now:
            yield heapq.heappop(self._heap)
