"""Benchmark a million-customer account (issue 22): the nightly run and the reconcile at a million.

One unattended run (a script, not a test):

1. Seeds, through the fast path (`million_account.py`, no API call): a DuckDB warehouse with
   `--leads` leads and as many trials, the sync state a first load leaves behind, and a sandbox
   holding the same account, in a process of its own with ChartMogul's limits on (40 req/s, 20
   connections, 50 ms latency, JSON imports applied 1 s after they are queued).
2. Nightly: one day in which every `--changed-every`-th lead got a new e-mail and as many trials a
   new quantity (0.5% by default); the tasks of `chartmogul_leads_trials` that do the work
   (extract_and_validate, upsert_plans, upsert_customers, import_trial_invoices) each in a fresh
   process, as Airflow runs them, the client at its defaults (35 req/s, 10 connections). Per task:
   wall time, peak RSS, requests. Goals: every task < 600 MiB; the run's wall time < 3× the time
   its requests need at the configured pace; requests per changed row as on the 20,000 bench (2).
3. Reconcile: `chartmogul_reconcile`'s work (`run_reconciliation`) in a fresh process over the same
   account. Goals: < 1.5× the time its list requests need at the pace; < 600 MiB.

Prints its figures as JSON (`--output FILE` writes them there too) for `bench_report.py`; exits 1
when a goal is missed. Loopback only.

    .venv/bin/python bench/bench_million.py [--leads 1000000] [--changed-every 200] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "plugins"))
sys.path.append(str(Path(__file__).resolve().parent))

import million_account  # noqa: E402

API_RATE_LIMIT = 40.0
API_MAX_CONNECTIONS = 20
LATENCY_SECONDS = 0.050
JSON_IMPORT_DELAY_SECONDS = 1.0
KEY = "bench-key-0123456789"
GOAL_PEAK_MIB = 600.0
GOAL_NIGHTLY_WALL_OVER_PACE = 3.0
GOAL_RECONCILE_OVER_LISTING = 1.5
GOAL_REQUESTS_PER_CHANGED_ROW = 2.0
NIGHTLY_TASKS = ("extract", "plan", "lead", "trial")
# The nightly run's day: the data interval that holds `million_account.CHANGED_AT`.
DAY_START = datetime(2025, 11, 1, tzinfo=UTC)
DAY_END = datetime(2025, 11, 2, tzinfo=UTC)
RUN_STARTED_AT = datetime(2025, 11, 2, 0, 10, tzinfo=UTC)


class StampingTransport(httpx.HTTPTransport):
    """An httpx transport that notes when each request starts (requests and their span)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []
        self.invoice_requests = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.starts.append(time.monotonic())
            self.invoice_requests += "invoice" in request.url.path
        return super().handle_request(request)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: `ru_maxrss` keeps a forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---- the child processes: the sandbox, and one task each -------------------------------------------


def serve_sandbox(warehouse: Path, port_file: Path) -> None:
    """Seed a sandbox from the warehouse's sync state, serve it with ChartMogul's limits until SIGTERM."""
    from mogulflow_sandbox import Faults, SandboxServer

    faults = Faults(
        rate_limit_per_second=API_RATE_LIMIT,
        max_parallel=API_MAX_CONNECTIONS,
        latency_seconds=LATENCY_SECONDS,
    )
    server = SandboxServer(
        port=0, api_key=KEY, faults=faults, json_import_delay_seconds=JSON_IMPORT_DELAY_SECONDS
    )
    started = time.monotonic()
    added = million_account.seed_sandbox(server.state, warehouse)
    seeded = time.monotonic() - started
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        port_file.write_text(json.dumps({"url": server.url, "records": added, "seconds": seeded}))
        stop.wait()


def run_task(job: dict[str, Any]) -> dict[str, Any]:
    """One task of the nightly run (or the reconcile) in this process; its figures."""
    import logging

    from mogulflow.chartmogul import ChartMogulClient
    from mogulflow.chartmogul.data_sources import ensure_data_source
    from mogulflow.load.entity_step import StepInputs
    from mogulflow.sync import leads_trials as sync
    from mogulflow.values.entities import Entity
    from mogulflow.values.json_form import from_json, to_json
    from mogulflow.values.run_settings import resolve_settings
    from mogulflow.values.step_reports import ExtractReport
    from mogulflow.warehouse.connection import Warehouse

    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    step = job["step"]
    settings = resolve_settings(
        {},
        run_id=job["run_id"],
        dag_id="chartmogul_leads_trials",
        data_interval_start=DAY_START,
        data_interval_end=DAY_END,
        started_at=RUN_STARTED_AT,
    )
    warehouse = Warehouse.open_duckdb(job["warehouse"])
    stamps = StampingTransport()
    figures: dict[str, Any] = {}
    try:
        with ChartMogulClient(base_url=job["url"], api_key=KEY, transport=stamps) as client:
            figures["configured_rps"] = client.settings.requests_per_second
            if step == "extract":
                ds = ensure_data_source(client, settings.data_source_name, dry_run=False)
                report = sync.extract_and_validate(warehouse, settings, ds)
                figures["data_source_uuid"] = ds
                figures["extract"] = to_json(report)
                figures["extracted"] = {str(e): p.extracted for e, p in report.parts.items()}
            elif step == "reconcile":
                from mogulflow.reconcile.run import ReconcileRequest, run_reconciliation

                request = ReconcileRequest(
                    run_id=job["run_id"],
                    dag_id="chartmogul_reconcile",
                    data_source_name=settings.data_source_name,
                    resend=False,
                    started_at=datetime.now(UTC),
                )
                result = run_reconciliation(warehouse, client, request)
                figures["differences"] = {str(k): v for k, v in result.differences.items()}
            else:
                report = from_json(ExtractReport, job["extract"])
                inputs = StepInputs(warehouse, client, settings, job["data_source_uuid"], report)
                loaded = sync.load_entity(inputs, Entity(step))
                figures.update(
                    created=loaded.created,
                    updated=loaded.updated,
                    unchanged=loaded.unchanged,
                    failed=loaded.failed,
                )
    finally:
        warehouse.close()
    starts = stamps.starts
    figures.update(
        step=step,
        seconds=time.monotonic() - started,
        requests=len(starts),
        invoice_requests=stamps.invoice_requests,
        request_span=starts[-1] - starts[0] if len(starts) > 1 else 0.0,
        peak_rss_mib=peak_rss_mib(),
    )
    return figures


def _child(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def run_child_task(job: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`run_task` in a fresh process (as Airflow runs a task); its figures, process start included."""
    job_file = folder / f"job-{job['step']}.json"
    out_file = folder / f"out-{job['step']}.json"
    job_file.write_text(json.dumps(job))
    started = time.monotonic()
    subprocess.run(_child("_task", str(job_file), str(out_file)), check=True, timeout=3600)
    figures = json.loads(out_file.read_text())
    figures["process_seconds"] = time.monotonic() - started
    return figures


# ---- the bench ---------------------------------------------------------------------------------------


def measure(folder: Path, leads: int, changed_every: int, parts: set[str]) -> dict[str, Any]:
    """Seed, then the nightly run and the reconcile; every figure."""
    os.environ["MOGULFLOW_STAGING_DIR"] = str(folder / "staging")
    warehouse = folder / "million.duckdb"
    figures: dict[str, Any] = {"leads": leads}
    started = time.monotonic()
    million_account.build_warehouse(warehouse, leads)
    figures["seed_state_rows"] = million_account.seed_sync_state(warehouse)
    figures["seed_warehouse_seconds"] = time.monotonic() - started
    port_file = folder / "sandbox.json"
    sandbox = subprocess.Popen(_child("_sandbox", str(warehouse), str(port_file)))
    try:
        while not port_file.exists():
            if sandbox.poll() is not None:
                raise RuntimeError("the seeded sandbox did not start")
            time.sleep(0.5)
        served = json.loads(port_file.read_text())
        figures["seed_sandbox_seconds"] = served["seconds"]
        job = {"warehouse": str(warehouse), "url": served["url"]}
        if "reconcile" in parts:
            figures["reconcile"] = run_child_task(
                {**job, "step": "reconcile", "run_id": "reconcile-1m"}, folder
            )
        if "nightly" in parts:
            changed = million_account.change_rows(warehouse, changed_every)
            figures["changed"] = {"leads": changed[0], "trials": changed[1]}
            tasks: dict[str, Any] = {}
            nightly_job = {**job, "run_id": "nightly-1m"}
            for step in NIGHTLY_TASKS:
                tasks[step] = run_child_task({**nightly_job, "step": step}, folder)
                if step == "extract":
                    nightly_job.update(
                        extract=tasks[step].pop("extract"), data_source_uuid=tasks[step]["data_source_uuid"]
                    )
            figures["nightly"] = tasks
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait(60)
    return figures


def judge(figures: dict[str, Any]) -> list[str]:
    """The goals missed."""
    missed = []
    nightly = figures.get("nightly")
    if nightly:
        rps = nightly["lead"]["configured_rps"]
        requests = sum(task["requests"] for task in nightly.values())
        wall = sum(task["process_seconds"] for task in nightly.values())
        at_pace = requests / rps
        figures["nightly_summary"] = {"requests": requests, "wall": wall, "at_pace": at_pace}
        for step, task in nightly.items():
            if task["peak_rss_mib"] >= GOAL_PEAK_MIB:
                missed.append(f"nightly task {step} peaked at {task['peak_rss_mib']:.0f} MiB")
        if wall >= GOAL_NIGHTLY_WALL_OVER_PACE * at_pace:
            missed.append(f"nightly wall {wall:.0f} s >= 3x its requests at pace ({at_pace:.0f} s)")
        # As the 20,000 bench counts them: a changed trial's invoice requests (the plans' one listing
        # page that gives line items their plan uuids is the step's, not the row's).
        for entity, step, counted in (("leads", "lead", "requests"), ("trials", "trial", "invoice_requests")):
            per_row = nightly[step][counted] / max(1, figures["changed"][entity])
            if per_row > GOAL_REQUESTS_PER_CHANGED_ROW:
                missed.append(f"{per_row:.2f} requests per changed {step} (goal <= 2)")
    reconcile = figures.get("reconcile")
    if reconcile:
        at_pace = reconcile["requests"] / reconcile["configured_rps"]
        if reconcile["seconds"] >= GOAL_RECONCILE_OVER_LISTING * at_pace:
            missed.append(
                f"reconcile {reconcile['seconds']:.0f} s >= 1.5x its listing at pace ({at_pace:.0f} s)"
            )
        if reconcile["peak_rss_mib"] >= GOAL_PEAK_MIB:
            missed.append(f"reconcile peaked at {reconcile['peak_rss_mib']:.0f} MiB")
    return missed


def main() -> int:
    """Seed, measure, print the figures; 1 when a goal is missed."""
    if len(sys.argv) > 1 and sys.argv[1] == "_sandbox":
        serve_sandbox(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_task":
        figures = run_task(json.loads(Path(sys.argv[2]).read_text()))
        Path(sys.argv[3]).write_text(json.dumps(figures, default=str))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--changed-every", type=int, default=200, help="200: 0.5%% of leads and of trials")
    parser.add_argument("--parts", default="nightly,reconcile", help="nightly and/or reconcile")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-million-"))
    figures = measure(folder, args.leads, args.changed_every, set(args.parts.split(",")))
    missed = judge(figures)
    figures["missed"] = missed
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    if args.output:
        args.output.write_text(text)
    for goal in missed:
        print(f"GOAL MISSED: {goal}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
