"""Progress: one log line every so many seconds while a long load runs (done / total, rate, ETA).

A load of a million rows logs by the clock, not by the row: often enough that the grid's log view
shows it is alive, rarely enough that the log stays readable whatever the pace. Airflow-free; the
clock is injectable so tests can drive it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Seconds between two progress lines: a glance at the task log every half minute is enough to see
# the pace, and a night's load (hours) stays a few hundred lines.
DEFAULT_PROGRESS_SECONDS = 30.0
PROGRESS_SECONDS_ENV = "MOGULFLOW_PROGRESS_SECONDS"

Clock = Callable[[], float]


def progress_seconds() -> float:
    """Seconds between progress lines: `$MOGULFLOW_PROGRESS_SECONDS`, else 30."""
    value = os.environ.get(PROGRESS_SECONDS_ENV, "").strip()
    return float(value) if value else DEFAULT_PROGRESS_SECONDS


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: short enough for a log line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class ProgressReporter:
    """Logs `what: done/total rows (pct), rate rows/s, ETA` at most once per `every_seconds`.

    Call `update(done)` as often as convenient (after every write, every import): it logs only when
    the interval has passed since the last line. `finish(done)` logs the last line unconditionally
    when at least one line was logged before (a short load stays silent: its summary line says it all).
    """

    what: str
    total: int
    logger: logging.Logger
    every_seconds: float = field(default_factory=progress_seconds)
    clock: Clock = time.monotonic
    # Rows already done when the load starts (unchanged rows counted up front): not part of the rate.
    baseline: int = 0
    started: float = field(init=False)
    last_logged: float = field(init=False)
    lines: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.last_logged = self.started

    def update(self, done: int, detail: str = "") -> bool:
        """Log a progress line if `every_seconds` passed since the last one; answers whether it did."""
        now = self.clock()
        if now - self.last_logged < self.every_seconds:
            return False
        self._log(done, now, detail)
        return True

    def finish(self, done: int, detail: str = "") -> None:
        """The closing progress line of a load that logged progress before."""
        if self.lines:
            self._log(done, self.clock(), detail)

    def line(self, done: int, now: float, detail: str = "") -> str:
        """The progress line for `done` rows at clock time `now`."""
        elapsed = now - self.started
        rate = (done - self.baseline) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * done / self.total:.1f}%)" if self.total else ""
        if done >= self.total:
            eta = "done"
        elif rate > 0:
            eta = f"ETA {format_duration((self.total - done) / rate)}"
        else:
            eta = "ETA unknown"
        suffix = f" [{detail}]" if detail else ""
        return (
            f"{self.what}: {done:,}/{self.total:,} rows{share}, {rate:,.1f} rows/s, "
            f"{format_duration(elapsed)} elapsed, {eta}{suffix}"
        )

    def _log(self, done: int, now: float, detail: str) -> None:
        self.logger.info("%s", self.line(done, now, detail))
        self.last_logged = now
        self.lines += 1
