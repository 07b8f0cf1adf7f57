"""Fixtures for the transport tests: fast retry settings and a client wired to the in-memory fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_api import FakeChartMogul

from mogulflow.api import ChartMogulClient, RetryPolicy

#: Retries that take milliseconds, so fault tests stay fast; same shape as the defaults.
FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01, max_elapsed=10.0)


@pytest.fixture
def fake() -> FakeChartMogul:
    """A fresh in-memory ChartMogul."""
    return FakeChartMogul()


@pytest.fixture
def client(fake: FakeChartMogul) -> Iterator[ChartMogulClient]:
    """A client on the fake with fast retries and no real pacing."""
    with ChartMogulClient(
        base_url="https://api.example.test",
        api_key=fake.api_key,
        requests_per_second=10_000,
        retry=FAST_RETRY,
        transport=fake.transport(),
    ) as built:
        yield built
