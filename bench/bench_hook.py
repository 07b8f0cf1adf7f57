"""Benchmark the ChartMogul transport against the local sandbox (a script, not a test).

1. Pace: achieved requests/second vs the configured `requests_per_second`, with 40 ms of
   latency injected on every request and 10 parallel callers on one client.
2. Bulk vs per-object: requests needed to load the same 1,000 customers with one trial invoice
   each, through `run_json_import` and through `upsert_customer` + `import_invoices`.

Run: `PYTHONPATH=plugins .venv/bin/python bench/bench_hook.py [--customers 1000] [--quick]`
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mogulflow.chartmogul import ChartMogulClient
from mogulflow_sandbox import Faults, SandboxServer

KEY = "bench-key-0123456789"
LATENCY = 0.040


def measure_pace(server: SandboxServer, requests_per_second: float, seconds: float) -> dict[str, Any]:
    """Fire pings from 10 threads for about `seconds`; return achieved pace and server-side 429s."""
    server.reset()
    server.set_faults(Faults(latency_seconds=LATENCY, rate_limit_per_second=40))
    total = int(requests_per_second * seconds)
    with ChartMogulClient(
        base_url=server.url, api_key=KEY, requests_per_second=requests_per_second, max_connections=10
    ) as client:
        client.ping()  # warm the connection pool and the limiter's schedule
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            list(pool.map(lambda _: client.ping(), range(total)))
        elapsed = time.monotonic() - started
    return {
        "configured": requests_per_second,
        "requests": total,
        "achieved": total / elapsed,
        "rate_limited": server.fault_counts().get("rate_limited", 0),
    }


def customer(n: int) -> dict[str, Any]:
    return {
        "external_id": f"lead-{n:05d}",
        "name": f"Company {n}",
        "email": f"owner{n}@example.com",
        "country": "DE",
        "lead_created_at": "2025-01-02T09:00:00Z",
        "free_trial_started_at": "2025-01-03T09:00:00Z",
    }


def trial_line_item(n: int) -> dict[str, Any]:
    return {
        "type": "trial",
        "external_id": f"trial-{n:05d}",
        "subscription_external_id": f"trial-{n:05d}",
        "service_period_start": "2025-01-03T09:00:00Z",
        "service_period_end": "2025-01-17T09:00:00Z",
        "amount_in_cents": 0,
        "quantity": 1,
    }


def trial_invoice(n: int) -> dict[str, Any]:
    return {
        "external_id": f"trial-{n:05d}",
        "date": "2025-01-03T09:00:00Z",
        "currency": "EUR",
        "customer_external_id": f"lead-{n:05d}",
    }


PLAN = {"external_id": "trial-plan", "name": "Trial", "interval_count": 1, "interval_unit": "month"}


def load_per_object(server: SandboxServer, customers: int, requests_per_second: float) -> dict[str, Any]:
    """One upsert and one invoice import per customer, 4 worker threads, as the loader does."""
    server.reset()
    server.set_faults(Faults())
    with ChartMogulClient(
        base_url=server.url, api_key=KEY, requests_per_second=requests_per_second
    ) as client:
        ds = client.create_data_source("Leads")["uuid"]
        plan_uuid = client.upsert_plan({**PLAN, "data_source_uuid": ds}).uuid
        started = time.monotonic()

        def one(n: int) -> None:
            outcome = client.upsert_customer({**customer(n), "data_source_uuid": ds})
            invoice = {
                **trial_invoice(n),
                "data_source_uuid": ds,
                "line_items": [{**trial_line_item(n), "plan_uuid": plan_uuid}],
            }
            result = client.import_invoices(outcome.uuid, [invoice])
            assert not result.errors, result.errors

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, range(customers)))
        elapsed = time.monotonic() - started
    return {
        "mode": "per-object",
        "requests": len(server.requests),
        "seconds": elapsed,
        "customers": len(server.state.customers(ds)),
        "invoices": len(server.state.invoices(ds)),
    }


def load_bulk(
    server: SandboxServer, customers: int, requests_per_second: float, batch: int
) -> dict[str, Any]:
    """The same data through JSON imports of `batch` customers each."""
    server.reset()
    server.set_faults(Faults())
    with ChartMogulClient(
        base_url=server.url, api_key=KEY, requests_per_second=requests_per_second
    ) as client:
        ds = client.create_data_source("Leads")["uuid"]
        started = time.monotonic()
        for first in range(0, customers, batch):
            numbers = range(first, min(first + batch, customers))
            payload = {
                "external_id": f"bench-{first:05d}",
                "plans": [PLAN],
                "customers": [customer(n) for n in numbers],
                "invoices": [trial_invoice(n) for n in numbers],
                "line_items": [
                    {
                        **trial_line_item(n),
                        "invoice_external_id": f"trial-{n:05d}",
                        "plan_external_id": "trial-plan",
                    }
                    for n in numbers
                ],
            }
            client.run_json_import(ds, payload, poll_interval=0.25, timeout=120)
        elapsed = time.monotonic() - started
    return {
        "mode": f"bulk ({batch}/import)",
        "requests": len(server.requests),
        "seconds": elapsed,
        "customers": len(server.state.customers(ds)),
        "invoices": len(server.state.invoices(ds)),
    }


def main() -> None:
    """Run both benchmarks and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each pace measurement")
    parser.add_argument("--quick", action="store_true", help="fewer customers and shorter runs")
    args = parser.parse_args()
    customers = 100 if args.quick else args.customers
    seconds = 2.0 if args.quick else args.seconds

    with SandboxServer(port=0, api_key=KEY, json_import_delay_seconds=0.5) as server:
        print(f"Pace (10 threads, {LATENCY * 1000:.0f} ms latency, sandbox limit 40 req/s)")
        print(f"{'configured':>10} {'requests':>9} {'achieved':>9} {'ratio':>6} {'429s':>5}")
        for rate in (10.0, 20.0, 35.0):
            row = measure_pace(server, rate, seconds)
            print(
                f"{rate:>10.0f} {row['requests']:>9} {row['achieved']:>9.1f} "
                f"{row['achieved'] / rate:>6.1%} {row['rate_limited']:>5}"
            )

        print(f"\nLoading {customers} customers with one trial invoice each (35 req/s)")
        print(f"{'mode':<20} {'requests':>9} {'seconds':>8} {'customers':>10} {'invoices':>9}")
        for row in (load_per_object(server, customers, 35.0), load_bulk(server, customers, 35.0, 500)):
            print(
                f"{row['mode']:<20} {row['requests']:>9} {row['seconds']:>8.1f} "
                f"{row['customers']:>10} {row['invoices']:>9}"
            )


if __name__ == "__main__":
    main()
