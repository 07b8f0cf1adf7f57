"""How many requests per second the sandbox serves on this machine (loopback, no faults, no latency).

Starts ``mogulflow sandbox --port 0`` in its own process, then drives it with concurrent
httpx clients doing a mix of writes and reads (create a customer, find it by external id, fetch it,
patch it, list a page). Each round is bounded in requests and seconds; the median of the rounds is
printed. Exits 1 if the median is below the target.

    .venv/bin/python bench/bench_sandbox.py [--clients 10] [--rounds 3] [--requests 2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TARGET_REQUESTS_PER_SECOND = 500.0


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    """The sandbox in a child process (so clients and server do not share one interpreter lock)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mogulflow_sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1]


def run_round(
    base_url: str, data_source_uuid: str, clients: int, max_requests: int, max_seconds: float
) -> float:
    """One round: ``clients`` threads share a request budget; answers requests/second."""
    budget = itertools.count()
    sequence = itertools.count()
    errors: list[str] = []
    done = [0] * clients
    deadline = time.monotonic() + max_seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=base_url + "/v1", auth=("bench", ""), timeout=10) as client:
            while next(budget) < max_requests and time.monotonic() < deadline:
                for step in customer_session(client, data_source_uuid, next(sequence)):
                    response = step()
                    done[index] += 1
                    if response.status_code >= 400:
                        errors.append(
                            f"{response.request.method} {response.request.url.path}: {response.status_code}"
                        )

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return sum(done) / elapsed


def customer_session(
    client: httpx.Client, data_source_uuid: str, number: int
) -> list[Callable[[], httpx.Response]]:
    """Five requests around one customer: 2 writes (POST, PATCH) and 3 reads."""
    external_id = f"bench-{os.getpid()}-{time.monotonic_ns()}-{number}"
    created: dict[str, str] = {}

    def create() -> httpx.Response:
        body = {
            "data_source_uuid": data_source_uuid,
            "external_id": external_id,
            "name": "Bench Co",
            "email": f"{external_id}@bench.example",
            "country": "DE",
            "free_trial_started_at": "2025-01-02 00:00:00",
        }
        response = client.post("/customers", json=body)
        created["uuid"] = response.json()["uuid"]
        return response

    return [
        create,
        lambda: client.get(
            "/customers", params={"data_source_uuid": data_source_uuid, "external_id": external_id}
        ),
        lambda: client.get(f"/customers/{created['uuid']}"),
        lambda: client.patch(f"/customers/{created['uuid']}", json={"city": "Berlin"}),
        lambda: client.get("/customers", params={"data_source_uuid": data_source_uuid, "per_page": 20}),
    ]


def main() -> int:
    """Run the rounds and report; 0 when the median reaches the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--requests", type=int, default=2000, help="customer sessions (5 requests) per round, at most"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per round, at most")
    arguments = parser.parse_args()

    process, base_url = start_sandbox()
    try:
        with httpx.Client(base_url=base_url + "/v1", auth=("bench", "")) as client:
            data_source_uuid = client.post("/data_sources", json={"name": "Bench"}).json()["uuid"]
        rates = []
        for round_number in range(1, arguments.rounds + 1):
            rate = run_round(
                base_url, data_source_uuid, arguments.clients, arguments.requests, arguments.seconds
            )
            rates.append(rate)
            print(f"round {round_number}: {rate:,.0f} requests/second")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    median = statistics.median(rates)
    verdict = "ok" if median >= TARGET_REQUESTS_PER_SECOND else "BELOW TARGET"
    print(
        f"median: {median:,.0f} requests/second with {arguments.clients} clients"
        f" (target {TARGET_REQUESTS_PER_SECOND:,.0f}): {verdict}"
    )
    return 0 if median >= TARGET_REQUESTS_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
