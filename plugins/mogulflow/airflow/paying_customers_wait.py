"""The Airflow side of the wait for paying customers: a deferrable operator and the trigger it defers to.

Billing integrations create the paying customer in ChartMogul some minutes after the payment, so
`chartmogul_merge_converted_leads` looks every paying customer of the run up once in the worker and,
while some are missing, defers: the worker slot is released and the triggerer repeats the lookups
(`mogulflow.merge.paying_customers.wait_for_paying_customers`, with the async client) every
`lookup_interval_seconds` until all are found or `lookup_timeout_seconds` have passed since the
first lookup. One task and one trigger wait for the whole batch, not one sensor per conversion.

The trigger enforces its own deadline and always fires one event (found + still missing), so the
task resumes and the run goes on to merge what was found. That also makes it work under
`dag.test()` / `airflow dags test`, which run a deferred task's trigger in line until its first
event and ignore the defer timeout.

Module-level imports stay light: the DAG file imports this module when it is parsed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context, XComArg
from airflow.triggers.base import BaseTrigger, TriggerEvent

from mogulflow.values.constants import CHARTMOGUL_CONN_ID, WAREHOUSE_CONN_ID
from mogulflow.values.json_form import Json, from_json, to_json

if TYPE_CHECKING:
    from mogulflow.chartmogul.client import AsyncChartMogulClient
    from mogulflow.merge.paying_customers import BillingKey, PayingCustomer

# Extra time the scheduler grants the trigger beyond its own deadline before failing the task
# (a triggerer that is down, or lookups slowed by retries).
DEFER_MARGIN_SECONDS = 300


class PayingCustomersTrigger(BaseTrigger):
    """Look the missing paying customers up every `interval` seconds until found or `deadline` passes.

    Fires one event whose payload is a `mogulflow.merge.paying_customers.LookupReport` in XCom form.
    Every argument is JSON (the trigger is stored in the metadata DB and may restart on another
    triggerer); the API key is read from the connection, never passed.
    """

    def __init__(
        self,
        *,
        keys: Sequence[Mapping[str, str]],
        found: Sequence[Mapping[str, Any]] = (),
        polls: int = 0,
        started_at: float,
        deadline: float,
        interval: float,
        chartmogul_conn_id: str = CHARTMOGUL_CONN_ID,
    ) -> None:
        super().__init__()
        self.keys = [dict(key) for key in keys]
        self.found = [dict(customer) for customer in found]
        self.polls = polls
        self.started_at = started_at
        self.deadline = deadline
        self.interval = interval
        self.chartmogul_conn_id = chartmogul_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and JSON kwargs to rebuild the trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "keys": self.keys,
                "found": self.found,
                "polls": self.polls,
                "started_at": self.started_at,
                "deadline": self.deadline,
                "interval": self.interval,
                "chartmogul_conn_id": self.chartmogul_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until every key is found or the deadline passes; then fire once."""
        import asyncio

        # Everything synchronous happens in a worker thread, never on the triggerer's event loop,
        # which every trigger of the deployment shares: importing mogulflow's modules, reading the
        # connection (a secrets backend may call out), and httpx's lazy import of its async
        # transport on the first request.
        client, keys, found = await asyncio.to_thread(self._prepare)
        from mogulflow.merge.paying_customers import wait_for_paying_customers

        try:
            report = await wait_for_paying_customers(
                client,
                keys,
                interval=self.interval,
                deadline=self.deadline,
                found=found,
                polls=self.polls,
                started_at=self.started_at,
            )
        finally:
            await client.aclose()
        yield TriggerEvent(to_json(report))

    def _prepare(self) -> tuple[AsyncChartMogulClient, list[BillingKey], list[PayingCustomer]]:
        """(In a worker thread.) The async client and the trigger's values, every import done."""
        import anyio._backends._asyncio  # noqa: F401 - httpx's async transport, imported lazily
        import h11  # noqa: F401
        import httpcore._async.http11  # noqa: F401

        from mogulflow.airflow.hook import ChartMogulHook
        from mogulflow.merge.paying_customers import BillingKey, PayingCustomer

        client = ChartMogulHook(chartmogul_conn_id=self.chartmogul_conn_id).get_async_client()
        keys = [from_json(BillingKey, key) for key in self.keys]
        return client, keys, [from_json(PayingCustomer, customer) for customer in self.found]


class WaitForPayingCustomersOperator(BaseOperator):
    """Find the paying customer of every conversion still to merge, deferring while some are missing.

    Returns (XCom) a `mogulflow.merge.paying_customers.LookupReport`: found customers and the ones
    still missing at the deadline. Missing customers do not fail the task: the merge step records them.
    """

    template_fields: Sequence[str] = ("settings", "data_source_uuid", "extract_report")
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        settings: XComArg | Json,
        data_source_uuid: XComArg | Json,
        extract_report: XComArg | Json,
        chartmogul_conn_id: str = CHARTMOGUL_CONN_ID,
        warehouse_conn_id: str = WAREHOUSE_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.data_source_uuid = data_source_uuid
        self.extract_report = extract_report
        self.chartmogul_conn_id = chartmogul_conn_id
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context: Context) -> Json:
        """Look every key up once here; defer to `PayingCustomersTrigger` for the missing ones."""
        # Imported when the task runs, as every task body is (`mogulflow.airflow.tasks` says why).
        from mogulflow.airflow import task_bodies

        started = time.time()
        first = task_bodies.look_for_paying_customers(
            self.settings,
            self.data_source_uuid,
            self.extract_report,
            chartmogul_conn_id=self.chartmogul_conn_id,
            warehouse_conn_id=self.warehouse_conn_id,
        )
        report = first.report
        deadline = started + first.timeout_seconds
        if not report.missing or time.time() >= deadline:
            return task_bodies.finish_lookup(report, self.log)
        self.log.info(
            "%d of %d paying customers not in ChartMogul yet; looking again every %.0f s for up to %.0f s "
            "(deferred: no worker slot is held).",
            len(report.missing),
            len(first.keys),
            first.interval_seconds,
            first.timeout_seconds,
        )
        self.defer(
            trigger=PayingCustomersTrigger(
                keys=[to_json(key) for key in sorted(report.missing)],
                found=[to_json(customer) for customer in report.found],
                polls=report.polls,
                started_at=started,
                deadline=deadline,
                interval=first.interval_seconds,
                chartmogul_conn_id=self.chartmogul_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=first.timeout_seconds + first.interval_seconds + DEFER_MARGIN_SECONDS),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Json] | None = None) -> Json:
        """Resume after the trigger fired: hand its report on."""
        from mogulflow.airflow import task_bodies

        return task_bodies.finish_lookup(event or {}, self.log)
