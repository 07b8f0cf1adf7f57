"""ChartMogul REST v1 clients: `ChartMogulClient` (sync) and `AsyncChartMogulClient` (asyncio).

Both are a `ClientBase` (settings, repr, the endpoint table) and differ only in how they perform
the two kinds of step a flow comes down to (`attempts.FlowRun`): a `Send`, one HTTP request
within the client's connection slots and pace, and a `Pause`, a sleep. The sync client uses
`httpx.Client` and `time.sleep`, the async one `httpx.AsyncClient` and `asyncio.sleep`.

Every request of a client goes through the same `RateLimiter` (pace), the same connection slots
(parallelism), the same `RetryPolicy` and the same `CircuitBreaker`.

The names other modules import from here (settings, defaults, result values) are re-exported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Self, TypeVar

import httpx

from mogulflow.chartmogul import flows
from mogulflow.chartmogul.attempts import Received, Send
from mogulflow.chartmogul.base import ClientBase, Entry
from mogulflow.chartmogul.flows import MAX_PER_PAGE, Flow, Pages, Pause, WriteOutcome
from mogulflow.chartmogul.invoices import InvoiceImportResult
from mogulflow.chartmogul.pacing import ConnectionSlots
from mogulflow.chartmogul.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_TIMEOUT,
    ClientSettings,
    http_options,
    normalise_base_url,
)

#: ChartMogul's answer to more parallel connections than the account allows.
TOO_MANY_CONNECTIONS_STATUS = 503

T = TypeVar("T")


class ChartMogulClient(ClientBase[httpx.BaseTransport]):
    """Sync ChartMogul client: paced, retrying, idempotent creates; safe to share between threads."""

    connection_slots: ConnectionSlots
    _http: httpx.Client

    def _open(self, settings: ClientSettings, transport: httpx.BaseTransport | None) -> None:
        # Adaptive slots: a 503 for too many connections shrinks them (see `ConnectionSlots`).
        self.connection_slots = ConnectionSlots(settings.max_connections)
        self._http = httpx.Client(**http_options(settings), transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _run(self, flow: Flow[T]) -> T:
        run = self._start(flow)
        for step in run:
            run.report(self._perform(step))
        return run.result

    def _iterate(self, pages: Pages) -> Iterator[Entry]:
        query: dict[str, object] | None = pages.first_query()
        while query is not None:
            entries, query = self._run(flows.page(pages, query))
            yield from entries

    def _perform(self, step: Send | Pause) -> Received:
        """Sleep through a pause, or send one request within a connection slot and the pace."""
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            return None
        self.connection_slots.acquire()
        overloaded = False
        try:
            # Pace inside the slot, so that start times (not queue entries) follow the pace.
            self.limiter.acquire()
            response = self._http.request(step.method, step.path, params=step.params, content=step.content)
        except Exception as exc:  # the call's `Attempts` judges it: retry, raise, or ask the flow
            return exc
        else:
            overloaded = response.status_code == TOO_MANY_CONNECTIONS_STATUS
            return response
        finally:
            self.connection_slots.release(overloaded=overloaded)


class AsyncChartMogulClient(ClientBase[httpx.AsyncBaseTransport]):
    """Asyncio twin of `ChartMogulClient`: same settings, same methods (awaitable), same guarantees."""

    _slots: asyncio.Semaphore
    _http: httpx.AsyncClient

    def _open(self, settings: ClientSettings, transport: httpx.AsyncBaseTransport | None) -> None:
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._http = httpx.AsyncClient(**http_options(settings), transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    close = aclose

    async def _perform(self, step: Send | Pause) -> Received:
        """Sleep through a pause, or send one request within a connection slot and the pace."""
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        async with self._slots:
            await self.limiter.acquire_async()
            try:
                return await self._http.request(
                    step.method, step.path, params=step.params, content=step.content
                )
            except Exception as exc:  # the call's `Attempts` judges it: retry, raise, or ask the flow
                return exc

    async def _run(self, flow: Flow[T]) -> T:
        run = self._start(flow)
        for step in run:
            run.report(await self._perform(step))
        return run.result

    async def _iterate(self, pages: Pages) -> AsyncIterator[Entry]:
        query: dict[str, object] | None = pages.first_query()
        while query is not None:
            entries, query = await self._run(flows.page(pages, query))
            for entry in entries:
                yield entry


__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUESTS_PER_SECOND",
    "DEFAULT_TIMEOUT",
    "MAX_PER_PAGE",
    "TOO_MANY_CONNECTIONS_STATUS",
    "AsyncChartMogulClient",
    "ChartMogulClient",
    "ClientSettings",
    "InvoiceImportResult",
    "WriteOutcome",
    "normalise_base_url",
]
