"""The client-side pace: never faster than configured, and close to it when there is work."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mogulflow.chartmogul.pacing import GROW_AFTER_SUCCESSES, ConnectionSlots, RateLimiter


class FakeClock:
    """A clock that only moves when a fake sleep moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_back_to_back_requests_are_spaced_one_interval_apart():
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock)
    starts = []
    for _ in range(100):
        limiter.acquire(sleep=clock.sleep)
        starts.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.05)
    assert starts[-1] == pytest.approx(99 * 0.05)  # exactly the configured pace, no slower


def test_idle_time_does_not_build_up_a_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    limiter.acquire(sleep=clock.sleep)
    clock.now += 60  # a minute of silence
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(0.1)  # the next one waits again


def test_oversleeping_does_not_slow_the_schedule_down():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    waits = [limiter.reserve() for _ in range(3)]  # slots at 0.0, 0.1, 0.2
    assert waits == pytest.approx([0.0, 0.1, 0.2])
    clock.now = 0.13  # the second caller woke 30 ms late
    assert limiter.reserve() == pytest.approx(0.17)  # the fourth still starts at 0.3, on the grid


def test_pause_holds_every_caller():
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock)
    limiter.pause(2.0)
    assert limiter.reserve() == pytest.approx(2.0)


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="requests_per_second"):
        RateLimiter(0)


def test_many_threads_share_one_pace():
    rate = 200.0
    clock = FakeClock()  # stands still: all 8 threads ask for their slots at the same moment
    limiter = RateLimiter(rate, clock=clock)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            start = clock.now + limiter.reserve()
            with lock:
                starts.append(start)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each slot granted once, one interval after the other: never faster than configured, and not
    # slower when there is work.
    assert sorted(starts) == pytest.approx([n / rate for n in range(200)])


def test_connection_slots_shrink_on_overload_and_grow_back_slowly():
    slots = ConnectionSlots(4)
    for _ in range(3):
        slots.acquire()
        slots.release(overloaded=True)
    assert slots.limit == 1
    slots.acquire()
    slots.release(overloaded=True)
    assert slots.limit == 1  # never below one
    for _ in range(GROW_AFTER_SUCCESSES):
        slots.acquire()
        slots.release()
    assert slots.limit == 2
    for _ in range(10 * GROW_AFTER_SUCCESSES):
        slots.acquire()
        slots.release()
    assert slots.limit == 4  # never above the configured ceiling


def test_connection_slots_bound_requests_in_flight():
    slots = ConnectionSlots(3)
    peak = 0
    lock = threading.Lock()
    # Each request holds its slot until three hold one together: they must all get through, 3 at a time.
    three_in_flight = threading.Barrier(3, timeout=30)

    def request(_: int) -> None:
        nonlocal peak
        slots.acquire()
        with lock:
            peak = max(peak, slots.in_flight)
        three_in_flight.wait()
        slots.release()

    with ThreadPoolExecutor(max_workers=9) as pool:
        list(pool.map(request, range(9)))
    assert peak == 3 and slots.in_flight == 0
