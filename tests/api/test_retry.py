"""The retry pieces: which failures are retried, how long we wait, when the circuit opens."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pytest

from mogulflow.chartmogul.retry import (
    DEFAULT_RETRY_STATUS,
    CircuitBreaker,
    RetryPolicy,
    exponential_backoff,
    is_retriable_exception,
    is_retriable_status,
    parse_retry_after,
    request_was_not_sent,
    status_means_not_applied,
)

NOW = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limit_and_server_errors_are_retried(status):
    assert is_retriable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 422])
def test_client_errors_are_never_retried(status):
    assert not is_retriable_status(status)


def test_retriable_statuses_are_a_named_overridable_constant():
    assert frozenset({429, 500, 502, 503, 504}) == DEFAULT_RETRY_STATUS
    policy = RetryPolicy(retry_status=DEFAULT_RETRY_STATUS | {520})
    assert policy.should_retry_status(520)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.ReadError("reset"),
        httpx.WriteError("broken pipe"),
    ],
)
def test_network_errors_and_timeouts_are_retried(exc):
    assert is_retriable_exception(exc)


def test_configuration_errors_are_not_retried():
    assert not is_retriable_exception(httpx.UnsupportedProtocol("ftp://"))
    assert not is_retriable_exception(ValueError("bug"))


def test_only_connect_failures_prove_the_request_was_not_sent():
    assert request_was_not_sent(httpx.ConnectError("refused"))
    assert request_was_not_sent(httpx.ConnectTimeout("slow"))
    assert not request_was_not_sent(httpx.ReadTimeout("slow"))
    assert not request_was_not_sent(httpx.RemoteProtocolError("dropped"))


def test_only_refusals_at_the_door_prove_a_write_was_not_applied():
    assert status_means_not_applied(429)
    assert status_means_not_applied(503)  # ChartMogul: too many parallel connections
    assert not any(status_means_not_applied(s) for s in (500, 502, 504))


def test_a_cautious_policy_can_treat_503_as_possibly_applied():
    assert not RetryPolicy(not_applied_status=frozenset({429})).proves_not_applied(503)


def test_retry_after_in_seconds():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5


def test_retry_after_as_http_date():
    assert parse_retry_after("Mon, 05 Jan 2026 12:00:07 GMT", now=NOW) == pytest.approx(7.0)


def test_retry_after_in_the_past_means_now():
    assert parse_retry_after("Mon, 05 Jan 2026 11:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("-4") == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo"])
def test_missing_or_garbled_retry_after_is_ignored(value):
    assert parse_retry_after(value) is None


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    waits = exponential_backoff(base_delay=0.5, max_delay=4.0, rng=random.Random(7))
    drawn = [next(waits) for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= w <= c for w, c in zip(drawn, ceilings, strict=True))
    assert len(set(drawn)) == len(drawn)  # jittered, not lock-step


def test_policy_honours_retry_after_but_caps_it():
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.wait_for(backoff=0.3, retry_after=None) == 0.3
    assert policy.wait_for(backoff=0.3, retry_after=2.0) == 2.0
    assert policy.wait_for(backoff=0.3, retry_after=3600.0) == 10.0


def test_policy_needs_at_least_one_attempt():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_threshold_consecutive_exhausted_requests():
    breaker = CircuitBreaker(threshold=3, cooldown=30.0, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure("POST /v1/customers → HTTP 503")
    assert breaker.check() is None
    breaker.record_failure("POST /v1/customers → HTTP 503")
    reason = breaker.check()
    assert reason is not None
    assert "3 requests in a row" in reason and "HTTP 503" in reason


def test_a_success_resets_the_count():
    breaker = CircuitBreaker(threshold=2, clock=FakeClock())
    breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    assert breaker.check() is None


def test_open_circuit_lets_one_probe_through_after_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=30.0, clock=clock)
    breaker.record_failure("x")
    assert breaker.check() is not None
    clock.now += 31
    assert breaker.check() is None  # the probe
    assert breaker.check() is not None  # others still wait for the probe's verdict
    breaker.record_success()
    assert breaker.check() is None and not breaker.is_open


def test_failed_probe_reopens_the_circuit():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=30.0, clock=clock)
    breaker.record_failure("x")
    clock.now += 31
    assert breaker.check() is None
    breaker.record_failure("x")
    assert breaker.check() is not None
