"""The period a page shows (last N days, or a range), and the grain of its charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

Grain = Literal["day", "week"]


GRAINS: tuple[Grain, ...] = ("day", "week")


@dataclass(frozen=True)
class Period:
    """The half-open interval [since, until) of UTC days the page looks at."""

    since: date
    until: date  # exclusive

    @property
    def start(self) -> datetime:
        return datetime(self.since.year, self.since.month, self.since.day)

    @property
    def end(self) -> datetime:
        return datetime(self.until.year, self.until.month, self.until.day)

    @classmethod
    def last_days(cls, days: int, *, today: date) -> Period:
        """The `days` days up to and including `today`."""
        return cls(since=today - timedelta(days=days - 1), until=today + timedelta(days=1))
