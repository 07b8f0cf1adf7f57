"""Fixtures for the transport tests: a client on the in-memory fake, and the real sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_test_support import FAST_RETRY, SANDBOX_KEY
from fake_api import FakeChartMogul

from mogulflow.chartmogul import ChartMogulClient


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


@pytest.fixture
def live_sandbox() -> Iterator[Any]:
    """The real sandbox over HTTP, accepting only `SANDBOX_KEY`; faults are set by each test."""
    from mogulflow_sandbox import SandboxServer

    with SandboxServer(port=0, api_key=SANDBOX_KEY, json_import_delay_seconds=0.2) as server:
        yield server
