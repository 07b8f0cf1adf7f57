"""What a client is configured with: `ClientSettings`, its defaults, and the httpx options built from it.

Shared by the sync and the async client (and the hook, which reads a connection into settings), so
the two clients cannot drift apart in pace, parallelism, timeouts or headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

import httpx

from mogulflow import __version__
from mogulflow.chartmogul.retry import DEFAULT_CIRCUIT_COOLDOWN, DEFAULT_CIRCUIT_THRESHOLD, RetryPolicy

#: The production API; a sandbox or a proxy is configured through the connection's host instead.
DEFAULT_BASE_URL = "https://api.chartmogul.com"
#: Request starts per second: below ChartMogul's 40 per account, so pacing spares us the 429s.
DEFAULT_REQUESTS_PER_SECOND = 35.0
#: Requests in flight per client: half of the 20 parallel connections ChartMogul allows before a 503.
DEFAULT_MAX_CONNECTIONS = 10
#: Seconds per request: a stuck connection becomes a retriable timeout instead of a hung task.
DEFAULT_TIMEOUT = 30.0
#: The API path prefix every request path carries itself, so a base URL must not end with it.
API_VERSION_PREFIX = "/v1"
#: Names us in ChartMogul's logs, so a support request can point at our traffic.
USER_AGENT = f"mogulflow/{__version__} (+httpx)"


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs; shared by the sync and async clients. The key never shows in repr."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_threshold: int = DEFAULT_CIRCUIT_THRESHOLD
    circuit_cooldown: float = DEFAULT_CIRCUIT_COOLDOWN

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalise_base_url(self.base_url))
        if not self.api_key:
            raise ValueError("a ChartMogul API key is required (the connection's password)")
        if self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be positive, got {self.requests_per_second!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections!r}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")


def normalise_base_url(base_url: str) -> str:
    """`https://api.chartmogul.com/v1/` → `https://api.chartmogul.com` (paths add `/v1` themselves)."""
    url = (base_url or DEFAULT_BASE_URL).strip().rstrip("/")
    if url.endswith(API_VERSION_PREFIX):
        url = url[: -len(API_VERSION_PREFIX)]
    if "://" not in url:
        raise ValueError(f"base_url needs a scheme (https://... or http://...), got {url!r}")
    return url


def describe_settings(owner: str, settings: ClientSettings) -> str:
    """`Owner(base_url=..., requests_per_second=..., max_connections=...)`: a repr that omits the key."""
    return (
        f"{owner}(base_url={settings.base_url!r}, requests_per_second={settings.requests_per_second!r}, "
        f"max_connections={settings.max_connections!r})"
    )


class HttpOptions(TypedDict):
    """The keyword arguments `httpx.Client` and `httpx.AsyncClient` are both built with."""

    base_url: str
    auth: httpx.Auth
    headers: dict[str, str]
    timeout: httpx.Timeout
    limits: httpx.Limits


def http_options(settings: ClientSettings) -> HttpOptions:
    """The httpx pool options for these settings (the transport is the front end's own)."""
    return HttpOptions(
        base_url=settings.base_url,
        # Basic auth with the key as user name: the only place besides the settings that holds it.
        auth=httpx.BasicAuth(settings.api_key, ""),
        headers=build_headers(),
        timeout=build_timeout(settings),
        limits=build_limits(settings),
    )


def build_headers() -> dict[str, str]:
    """JSON in, JSON out, and who we are."""
    return {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": USER_AGENT}


def build_timeout(settings: ClientSettings) -> httpx.Timeout:
    """The per-request timeout, without a pool timeout."""
    # No pool timeout: our own connection slots already bound the wait, and a pool timeout would
    # turn "busy" into a spurious error.
    return httpx.Timeout(settings.timeout, pool=None)


def build_limits(settings: ClientSettings) -> httpx.Limits:
    """A pool as large as the requests we let fly at once, all kept alive (no reconnect per request)."""
    return httpx.Limits(
        max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
    )


__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUESTS_PER_SECOND",
    "DEFAULT_TIMEOUT",
    "ClientSettings",
    "HttpOptions",
    "http_options",
    "normalise_base_url",
]
