"""Shared values for the transport tests (kept out of conftest.py: `import conftest` is ambiguous)."""

from __future__ import annotations

from typing import Any

from mogulflow.chartmogul import ChartMogulClient, RetryPolicy

#: Retries that take milliseconds, so fault tests stay fast; same shape as the defaults.
FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01, max_elapsed=10.0)

#: The key the contract suite's sandbox accepts (and that must never leak).
SANDBOX_KEY = "cm_contract_key_7f3a9c21e4b8"


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
