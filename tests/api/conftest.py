"""Fixtures for the transport tests: fast retry settings and a client wired to the in-memory fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


#: The key the contract suite's sandbox accepts (and that must never leak).
SANDBOX_KEY = "cm_contract_key_7f3a9c21e4b8"


@pytest.fixture
def live_sandbox() -> Iterator[Any]:
    """The real sandbox over HTTP, accepting only `SANDBOX_KEY`; faults are set by each test."""
    from mogulflow.sandbox import SandboxServer

    with SandboxServer(port=0, api_key=SANDBOX_KEY, json_import_delay_seconds=0.2) as server:
        yield server


def sandbox_client(server: Any, **overrides: Any) -> ChartMogulClient:
    """A client on a sandbox with fast retries, overridable per test."""
    options: dict[str, Any] = {
        "base_url": server.url,
        "api_key": SANDBOX_KEY,
        "requests_per_second": 500,
        "max_connections": 8,
        "timeout": 5,
        "retry": RetryPolicy(max_attempts=10, base_delay=0.05, max_delay=0.5, max_elapsed=30.0),
        **overrides,
    }
    return ChartMogulClient(**options)
