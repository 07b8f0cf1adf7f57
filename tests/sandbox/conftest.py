"""Fixtures of the sandbox suite: one shared server, reset before every test, and an HTTP client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest

from mogulflow_sandbox import Faults, SandboxServer
from mogulflow_sandbox import faults as sandbox_faults

from .sandbox_builders import RateClock

TEST_API_KEY = "test-key"


@pytest.fixture(scope="session")
def shared_sandbox() -> Iterator[SandboxServer]:
    """One sandbox for the whole session, with short async delays so merges and imports settle fast."""
    with SandboxServer(merge_delay_seconds=0.05, json_import_delay_seconds=0.1) as server:
        yield server


@pytest.fixture
def sandbox(shared_sandbox: SandboxServer) -> SandboxServer:
    """The shared sandbox, emptied, its log cleared and its faults off."""
    shared_sandbox.reset()
    shared_sandbox.set_faults(Faults())
    return shared_sandbox


@pytest.fixture
def rate_clock(monkeypatch: pytest.MonkeyPatch) -> RateClock:
    """Stop the sandbox's rate window in time, so that a test's requests fall in one window however
    slowly the machine serves them (only the fault injector's clock: latency still takes real time)."""
    clock = RateClock()
    monkeypatch.setattr(sandbox_faults, "time", SimpleNamespace(monotonic=clock, time=time.time))
    return clock


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """An HTTP client for the sandbox's ``/v1``, authenticated with a test key."""
    with httpx.Client(base_url=sandbox.url + "/v1", auth=(TEST_API_KEY, ""), timeout=5) as client:
        yield client


@pytest.fixture
def data_source_uuid(api: httpx.Client) -> str:
    """A fresh custom data source called "Leads"."""
    response = api.post("/data_sources", json={"name": "Leads"})
    assert response.status_code == 201
    return str(response.json()["uuid"])
