"""Contract suite: the transport against the real sandbox over HTTP, on a bad day.

Faults (see `mogulflow_sandbox.Faults`): 429s from a rate limit (with and without Retry-After),
503s above a parallelism cap, random 5xx before a write, writes applied and then answered with a
5xx or with a dropped connection, latency. Whatever happens: zero duplicates, zero lost writes,
zero false failures; permanent errors surface at once, with the API's own words.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from api_test_support import SANDBOX_KEY, sandbox_client

from mogulflow.chartmogul import (
    AsyncChartMogulClient,
    AuthenticationError,
    ChartMogulClient,
    CircuitOpenError,
    RetryPolicy,
    TransientError,
    ValidationError,
)
from mogulflow_sandbox import Faults

BAD_DAY = Faults(
    rate_limit_per_second=300,
    max_parallel=4,  # the clients below open 8 connections: some requests get the "too many" 503
    error_rate_before=0.04,
    error_rate_after=0.04,
    drop_rate_after=0.04,
    latency_seconds=0.005,
    latency_jitter_seconds=0.01,
    seed=20260105,
)
# The random faults above fire on ~4 % of hundreds of requests whatever the machine; the rate limit
# and the parallelism cap fire only if the machine is fast enough to exceed them. Two phases of a
# bad day force those two first, so that the load fails only if the client mishandles a fault.
#: What a bad day must have thrown at the client (the sandbox's names of its faults).
EVERY_FAULT = ("error_before", "error_after", "dropped_after", "too_many_parallel", "rate_limited")
#: Leads per forced phase: one per thread of `load_leads_with_trials`.
PHASE_LEADS = 8
#: 8 requests a second: the client (paced at 500/s) starts 8 creates at once, so the next request
#: within that second is refused (429). The phase is small enough that no request can be refused on
#: all its retries: they span over a second (`sandbox_client`'s backoff), and refusing a request at
#: two moments a second apart takes 2 × 8 other accepted requests; the phase makes 2 × 8 − 1.
OVER_THE_RATE = Faults(rate_limit_per_second=PHASE_LEADS)
#: Every request is held 0.2 s and one may be in flight: the 8 threads' first requests overlap, so
#: some are refused (503) until the client's connection slots have shrunk to one.
OVER_THE_PARALLELISM = Faults(max_parallel=1, latency_seconds=0.2)


def customer_payload(ds: str, n: int) -> dict[str, Any]:
    return {
        "data_source_uuid": ds,
        "external_id": f"lead-{n:05d}",
        "name": f"Company {n}",
        "email": f"owner{n}@example.com",
        "country": "DE",
        "lead_created_at": "2025-01-02T09:00:00Z",
        "free_trial_started_at": "2025-01-03T09:00:00Z",
    }


def trial_invoice(ds: str, n: int, plan_uuid: str) -> dict[str, Any]:
    return {
        "external_id": f"trial-{n:05d}",
        "date": "2025-01-03T09:00:00Z",
        "currency": "EUR",
        "data_source_uuid": ds,
        "customer_external_id": f"lead-{n:05d}",
        "line_items": [
            {
                "type": "trial",
                "external_id": f"trial-{n:05d}",
                "subscription_external_id": f"trial-{n:05d}",
                "plan_uuid": plan_uuid,
                "service_period_start": "2025-01-03T09:00:00Z",
                "service_period_end": "2025-01-17T09:00:00Z",
                "amount_in_cents": 0,
                "quantity": 1,
            }
        ],
    }


def load_leads_with_trials(client: ChartMogulClient, ds: str, plan_uuid: str, leads: range) -> dict[str, Any]:
    """Upsert the `leads` customers and import one trial invoice each, from 8 threads on one client."""

    def one(n: int) -> tuple[str, str, str]:
        outcome = client.upsert_customer(customer_payload(ds, n))
        result = client.import_invoices(outcome.uuid, [trial_invoice(ds, n, plan_uuid)])
        assert not result.errors, result.errors
        ext = f"trial-{n:05d}"
        return outcome.uuid, ext, result.imported.get(ext) or result.already_present[ext]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, leads))
    return {"customers": [a[0] for a in answers], "invoices": {a[1]: a[2] for a in answers}}


def load_on_a_bad_day(
    server: Any, client: ChartMogulClient, ds: str, plan_uuid: str, count: int
) -> dict[str, Any]:
    """`load_leads_with_trials` of `count` leads: a phase over the rate, one over the parallelism,
    the rest under `BAD_DAY`; the faults are off again afterwards."""
    phases = [
        (OVER_THE_RATE, range(0, PHASE_LEADS)),
        (OVER_THE_PARALLELISM, range(PHASE_LEADS, 2 * PHASE_LEADS)),
        (BAD_DAY, range(2 * PHASE_LEADS, count)),
    ]
    answers: dict[str, Any] = {"customers": [], "invoices": {}}
    for faults, leads in phases:
        server.set_faults(faults)
        loaded = load_leads_with_trials(client, ds, plan_uuid, leads)
        answers["customers"] += loaded["customers"]
        answers["invoices"] |= loaded["invoices"]
    server.set_faults(Faults())
    return answers


def assert_exactly_once(server: Any, ds: str, answers: dict[str, Any], count: int) -> None:
    customers = server.state.customers(ds)
    assert len(customers) == count, "duplicate or lost customers"
    assert Counter(c["external_id"] for c in customers).most_common(1)[0][1] == 1
    assert sorted(c["uuid"] for c in customers) == sorted(answers["customers"])
    invoices = server.state.invoices(data_source_uuid=ds)
    assert len(invoices) == count, "duplicate or lost invoices"
    assert {i["external_id"]: i["uuid"] for i in invoices} == answers["invoices"]


def setup_data_source_and_plan(client: ChartMogulClient) -> tuple[str, str]:
    ds = client.create_data_source("Leads")["uuid"]
    plan = client.upsert_plan(
        {
            "data_source_uuid": ds,
            "external_id": "trial-plan",
            "name": "Trial",
            "interval_count": 1,
            "interval_unit": "month",
        }
    )
    return ds, plan.uuid


def test_writes_land_exactly_once_on_a_bad_day(live_sandbox):
    count = 300
    with sandbox_client(live_sandbox) as client:
        ds, plan_uuid = setup_data_source_and_plan(client)
        answers = load_on_a_bad_day(live_sandbox, client, ds, plan_uuid, count)
    assert_exactly_once(live_sandbox, ds, answers, count)
    fired = live_sandbox.fault_counts()
    assert set(EVERY_FAULT) <= set(fired), fired


@pytest.mark.slow
def test_thousands_of_writes_land_exactly_once_on_a_bad_day(live_sandbox):
    count = 1500  # 3,000 writes plus their lookups
    with sandbox_client(live_sandbox) as client:
        ds, plan_uuid = setup_data_source_and_plan(client)
        answers = load_on_a_bad_day(live_sandbox, client, ds, plan_uuid, count)
        # A retried task runs the same load again: everything is found, nothing is created or patched.
        again = [client.upsert_customer(customer_payload(ds, n)) for n in range(0, count, 50)]
    assert not any(o.created or o.updated for o in again)
    assert_exactly_once(live_sandbox, ds, answers, count)
    fired = live_sandbox.fault_counts()
    assert set(EVERY_FAULT) <= set(fired), fired


# 4 threads start 4 pings at once and the sandbox takes 4 a second: the next ping within that second
# is refused whatever the machine's speed. 8 pings: no ping can be refused on all its retries (see
# OVER_THE_RATE).
PINGS, PINGS_PER_SECOND = 8, 4


@pytest.mark.parametrize("http_date", [False, True], ids=["seconds", "http-date"])
def test_rate_limit_with_retry_after_is_honoured(live_sandbox, http_date):
    limit = Faults(rate_limit_per_second=PINGS_PER_SECOND, retry_after=1, retry_after_http_date=http_date)
    live_sandbox.set_faults(limit)
    with sandbox_client(live_sandbox, requests_per_second=200) as client:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert all(pool.map(lambda _: client.ping(), range(PINGS)))
        elapsed = time.monotonic() - started
    assert live_sandbox.fault_counts().get("rate_limited", 0) > 0
    assert elapsed >= 1.0  # 8 pings at 4/s cannot be done in less than a second: we waited


def test_rate_limit_without_retry_after_backs_off(live_sandbox):
    live_sandbox.set_faults(Faults(rate_limit_per_second=PINGS_PER_SECOND))
    with sandbox_client(live_sandbox, requests_per_second=200) as client, ThreadPoolExecutor(4) as pool:
        assert all(pool.map(lambda _: client.ping(), range(PINGS)))
    assert live_sandbox.fault_counts().get("rate_limited", 0) > 0


def test_pacing_keeps_the_sandbox_rate_limit_from_ever_firing(live_sandbox):
    live_sandbox.set_faults(Faults(rate_limit_per_second=40, latency_seconds=0.04))
    with sandbox_client(live_sandbox, requests_per_second=35, max_connections=10) as client:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            list(pool.map(lambda _: client.ping(), range(70)))
        elapsed = time.monotonic() - started
    achieved = 70 / elapsed
    assert "rate_limited" not in live_sandbox.fault_counts()
    # Never faster than the pace. That it is not much slower either depends on the machine's load
    # here; test_pacing.py::test_many_threads_share_one_pace asserts it on a clock of its own.
    assert achieved <= 35 * 1.05


def test_validation_error_surfaces_at_once_with_the_api_message(live_sandbox):
    with sandbox_client(live_sandbox) as client:
        ds = client.create_data_source("Leads")["uuid"]
        before = len(live_sandbox.requests)
        with pytest.raises(ValidationError) as raised:
            client.upsert_customer({**customer_payload(ds, 1), "email": "not-an-email"})
    # At once: one request, and no wait (the client only ever waits before another request).
    assert len(live_sandbox.requests) == before + 1
    assert raised.value.field == "email"
    assert "valid email" in raised.value.message


def test_unknown_plan_on_an_invoice_is_reported_per_invoice(live_sandbox):
    with sandbox_client(live_sandbox) as client:
        ds, plan_uuid = setup_data_source_and_plan(client)
        customer = client.upsert_customer(customer_payload(ds, 1))
        bad = trial_invoice(ds, 2, "pl_00000000-0000-0000-0000-000000000000")
        bad["customer_external_id"] = "lead-00001"
        result = client.import_invoices(customer.uuid, [trial_invoice(ds, 1, plan_uuid), bad])
    assert set(result.imported) == {"trial-00001"}
    assert set(result.errors) == {"trial-00002"} and result.errors["trial-00002"]
    assert len(live_sandbox.state.invoices(data_source_uuid=ds)) == 1


def test_invoice_already_there_counts_as_done(live_sandbox):
    with sandbox_client(live_sandbox) as client:
        ds, plan_uuid = setup_data_source_and_plan(client)
        customer = client.upsert_customer(customer_payload(ds, 1))
        first = client.import_invoices(customer.uuid, [trial_invoice(ds, 1, plan_uuid)])
        second = client.import_invoices(customer.uuid, [trial_invoice(ds, 1, plan_uuid)])
    assert second.already_present == first.imported and not second.imported and not second.errors


def test_wrong_key_fails_fast_and_never_shows_the_key(live_sandbox):
    wrong = "cm_wrong_key_0a1b2c3d4e5f"
    with (
        ChartMogulClient(base_url=live_sandbox.url, api_key=wrong) as client,
        pytest.raises(AuthenticationError) as raised,
    ):
        client.list_data_sources()
    assert len(live_sandbox.requests) == 1  # fast: not retried, so not waited for either
    assert "No valid API key provided" in str(raised.value)
    assert wrong not in str(raised.value) and SANDBOX_KEY not in str(raised.value)


def test_circuit_opens_instead_of_failing_rows_one_by_one(live_sandbox):
    with sandbox_client(
        live_sandbox,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
        circuit_threshold=3,
    ) as client:
        ds = client.create_data_source("Leads")["uuid"]
        live_sandbox.set_faults(Faults(error_rate_before=1.0))
        failures: list[type[Exception]] = []
        before = len(live_sandbox.requests)
        for n in range(1000):
            try:
                client.upsert_customer(customer_payload(ds, n))
            except (TransientError, CircuitOpenError) as error:
                failures.append(type(error))
                if isinstance(error, CircuitOpenError):
                    break
    assert failures[-1] is CircuitOpenError
    assert len(failures) <= 4  # stopped after the threshold, not after 1,000 rows
    # 3 rows of at most 3 create attempts, or 1 create and 3 lookup attempts; then not one request.
    assert len(live_sandbox.requests) - before <= 3 * (3 + 3)
    assert not live_sandbox.state.customers(ds)


def test_bulk_import_runs_to_completion_and_a_retry_follows_the_same_import(live_sandbox):
    with sandbox_client(live_sandbox) as client:
        ds = client.create_data_source("Leads")["uuid"]
        payload = {
            "external_id": "mogulflow-run-1-batch-0",
            "customers": [
                {k: v for k, v in customer_payload(ds, n).items() if k != "data_source_uuid"}
                for n in range(50)
            ],
        }
        live_sandbox.set_faults(Faults(error_rate_before=0.1, drop_rate_after=0.2, seed=7))
        done = client.run_json_import(ds, payload, poll_interval=0.05, timeout=20)
        again = client.run_json_import(ds, payload, poll_interval=0.05, timeout=20)
    assert done["status"] == again["status"] == "completed"
    assert len(live_sandbox.state.json_imports()) == 1
    assert len(live_sandbox.state.customers(ds)) == 50


def test_async_client_lands_writes_exactly_once(live_sandbox):
    with sandbox_client(live_sandbox) as setup:
        ds = setup.create_data_source("Leads")["uuid"]
    live_sandbox.set_faults(BAD_DAY)

    async def load() -> list[str]:
        async with AsyncChartMogulClient(
            base_url=live_sandbox.url,
            api_key=SANDBOX_KEY,
            requests_per_second=500,
            max_connections=8,
            retry=RetryPolicy(max_attempts=8, base_delay=0.02, max_delay=0.5),
        ) as client:
            outcomes = await asyncio.gather(
                *(client.upsert_customer(customer_payload(ds, n)) for n in range(150))
            )
            return [o.uuid for o in outcomes]

    uuids = asyncio.run(load())
    live_sandbox.set_faults(Faults())
    assert sorted(uuids) == sorted(c["uuid"] for c in live_sandbox.state.customers(ds))
    assert len(uuids) == 150
