"""A long load logs its progress by the clock (done / total, rate, ETA), not by the row."""

from __future__ import annotations

import logging

import pytest

from mogulflow.load.progress import ProgressReporter, format_duration


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def reporter(clock: FakeClock, total: int = 1000, every: float = 30.0) -> ProgressReporter:
    return ProgressReporter(
        "lead", total, logging.getLogger("test.progress"), every_seconds=every, clock=clock
    )


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_updates_within_the_interval_log_nothing(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = reporter(clock)
    for done in range(1, 300):
        clock.advance(0.05)  # 299 rows in under 15 s
        progress.update(done)
    assert lines(caplog) == []


def test_one_line_per_interval_whatever_the_row_count(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = reporter(clock, total=100_000)
    done = 0
    for _ in range(120):  # 120 s at 500 rows/s, an update every second
        clock.advance(1)
        done += 500
        progress.update(done)
    assert len(lines(caplog)) == 4  # at 30, 60, 90, 120 s


def test_a_line_says_done_total_share_rate_and_eta(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = reporter(clock, total=1000)
    clock.advance(40)
    progress.update(200, "created 190, failed 10")
    assert lines(caplog) == [
        "lead: 200/1,000 rows (20.0%), 5.0 rows/s, 40s elapsed, ETA 2m40s [created 190, failed 10]"
    ]


def test_rows_done_before_the_load_started_do_not_count_in_the_rate(clock):
    # 600 unchanged rows are counted up front; 100 rows written in 50 s: 2 rows/s, 300 rows to go
    progress = ProgressReporter("lead", 1000, logging.getLogger("test.progress"), clock=clock, baseline=600)
    clock.advance(50)
    assert "2.0 rows/s, 50s elapsed, ETA 2m30s" in progress.line(700, clock())


def test_finish_closes_a_long_load_with_done(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = reporter(clock, total=1000)
    clock.advance(31)
    progress.update(400)
    clock.advance(10)
    progress.finish(1000)
    assert lines(caplog)[-1].startswith("lead: 1,000/1,000 rows (100.0%)")
    assert lines(caplog)[-1].endswith("done")


def test_a_short_load_stays_silent_even_at_finish(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = reporter(clock)
    clock.advance(2)
    progress.update(1000)
    progress.finish(1000)
    assert lines(caplog) == []


def test_no_rows_done_yet_gives_an_unknown_eta(clock):
    progress = reporter(clock, total=10)
    clock.advance(60)
    assert progress.line(0, clock()).endswith("ETA unknown")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3600, "1h00m"), (7_380, "2h03m")]
)
def test_durations_read_short(seconds, text):
    assert format_duration(seconds) == text
