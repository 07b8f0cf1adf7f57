"""Benchmark mogulflow at a real company's size against a sandbox with ChartMogul's limits switched on.

One unattended run (a script, not a test), side by side:

1. First load: 20,000 leads with one trial each and 20 plans, a full refresh through the Airflow-free
   steps of `mogulflow.sync.leads_trials`, against a sandbox with 40 req/s, 20 connections, 50 ms latency and
   JSON imports applied 1 s after they are queued; the client at its defaults (35 req/s, 10
   connections). Wall time, requests, and the ratio to the per-object limit
   ((leads + trials + plans) / 40 s).
2. Baseline: what a team writes instead, the official `chartmogul` client one object at a time as its
   README shows (`Customer.create`, then `Invoice.create` with the trial), on the first 1,000 of
   those leads against the same sandbox; its rate is extrapolated to the whole load.
3. Nightly, 1% changed: 1% of the leads get a new e-mail and 1% of the trials a new quantity; writes
   and requests per changed row, and the achieved request rate of each load step (requests over the
   time from its first to its last request) against the configured `requests_per_second`.
4. The 1M-lead dry run of `bench_sync.py` (time, peak RSS, validation rows/s) and the DAG parse time
   of both DAG files as Airflow's DagBag reports it, each in fresh processes.

Prints its table and (`--json FILE`) writes its figures for `bench_table.py`, which puts them beside
the million-customer figures in docs/bench-results.md and the README; exits 1 if a goal is missed.
Loopback only.

    .venv/bin/python bench/bench_scale.py [--leads 20000] [--baseline-leads 1000] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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

# ChartMogul's limits (../shared/chartmogul-api.md §2) and a realistic round trip.
API_RATE_LIMIT = 40.0
API_MAX_CONNECTIONS = 20
LATENCY_SECONDS = 0.050
JSON_IMPORT_DELAY_SECONDS = 1.0
PLANS = 20  # as million_account.PLANS, whose warehouse this bench builds
GOAL_FIRST_LOAD_RATIO = 20.0
GOAL_NIGHTLY_PACE = 0.90
GOAL_REQUESTS_PER_CHANGED_TRIAL = 2.0
GOAL_DRY_RUN_PEAK_MIB = 500.0
GOAL_PARSE_SECONDS = 0.5
CHANGED_SHARE = 0.01
KEY = "bench-key-0123456789"
DAG_FILES = ("chartmogul_leads_trials.py", "chartmogul_merge_converted_leads.py")
# The sample's rows lie in 2025; the run happens after them.
RUN_STARTED_AT = datetime(2025, 11, 15, tzinfo=UTC)


def build_warehouse(path: Path, leads: int) -> None:
    """`leads` valid leads, one trial each on one of `PLANS` plans: the million bench's account, smaller."""
    import million_account

    million_account.build_warehouse(path, leads)


class StampingTransport(httpx.HTTPTransport):
    """An httpx transport that notes when each request starts (for the achieved request rate)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.starts.append(time.monotonic())
        return super().handle_request(request)


def _sync_steps(warehouse_path: Path, client: Any, run_id: str, stamps: StampingTransport) -> dict[str, Any]:
    """One full-refresh run of the loading steps as the DAG calls them; per step: time and requests."""
    from mogulflow.chartmogul.data_sources import ensure_data_source
    from mogulflow.load.entity_step import StepInputs
    from mogulflow.sync import leads_trials as sync
    from mogulflow.values.run_settings import resolve_settings
    from mogulflow.warehouse.connection import Warehouse

    settings = resolve_settings(
        {"full_refresh": True},
        run_id=run_id,
        dag_id="bench_scale",
        data_interval_start=None,
        data_interval_end=None,
        started_at=RUN_STARTED_AT,
    )
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    steps: dict[str, Any] = {}
    try:
        data_source_uuid = ensure_data_source(client, settings.data_source_name, dry_run=False)
        report = sync.extract_and_validate(warehouse, settings, data_source_uuid)
        inputs = StepInputs(warehouse, client, settings, data_source_uuid, report)
        for entity in sync.LOADED_ENTITIES:
            first = len(stamps.starts)
            started = time.monotonic()
            loaded = sync.load_entity(inputs, entity)
            starts = stamps.starts[first:]
            span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
            steps[str(entity)] = {
                "seconds": time.monotonic() - started,
                "requests": len(starts),
                "rate": (len(starts) - 1) / span if span else 0.0,
                "created": loaded.created,
                "updated": loaded.updated,
                "failed": loaded.failed,
            }
    finally:
        warehouse.close()
    return steps


def _change_one_percent(warehouse_path: Path, leads: int) -> int:
    """1% of leads get a new e-mail, a different 1% of trials a new quantity; answers each count."""
    import duckdb

    every = round(1 / CHANGED_SHARE)
    with duckdb.connect(str(warehouse_path)) as connection:
        connection.execute(
            "UPDATE leads SET email = 'new.' || lead_id || '@bench.example', "
            "updated_at = TIMESTAMP '2025-11-01' "
            f"WHERE CAST(substr(lead_id, 6) AS INTEGER) % {every} = 0"
        )
        connection.execute(
            f"UPDATE trials SET quantity = 2, updated_at = TIMESTAMP '2025-11-01' "
            f"WHERE CAST(substr(trial_id, 7) AS INTEGER) % {every} = 1"
        )
    return leads // every


def measure_mogulflow(folder: Path, leads: int, sandbox: Any) -> dict[str, Any]:
    """First load, then the nightly 1% change, through mogulflow with the client at its defaults."""
    from mogulflow.chartmogul import ChartMogulClient

    os.environ["MOGULFLOW_STAGING_DIR"] = str(folder / "staging")
    warehouse_path = folder / "scale.duckdb"
    build_warehouse(warehouse_path, leads)
    stamps = StampingTransport()
    with ChartMogulClient(base_url=sandbox.url, api_key=KEY, transport=stamps) as client:
        configured = client.settings.requests_per_second
        before = len(sandbox.requests)
        started = time.monotonic()
        first = _sync_steps(warehouse_path, client, "first-load", stamps)
        first_seconds = time.monotonic() - started
        first_requests = len(sandbox.requests) - before
        changed = _change_one_percent(warehouse_path, leads)
        before = len(sandbox.requests)
        nightly = _sync_steps(warehouse_path, client, "nightly", stamps)
        logged = sandbox.requests[before:]
    writes = [r for r in logged if r.method in {"POST", "PUT", "PATCH", "DELETE"}]
    invoice_requests = [r for r in logged if "invoice" in r.path]
    return {
        "configured_rps": configured,
        "first": {"seconds": first_seconds, "requests": first_requests, "steps": first},
        "nightly": {
            "changed_leads": changed,
            "changed_trials": changed,
            "requests": len(logged),
            "writes": len(writes),
            "requests_per_changed_trial": len(invoice_requests) / changed,
            "steps": nightly,
        },
    }


def measure_baseline(leads: int, sandbox: Any) -> dict[str, Any]:
    """The official client, one object at a time as its README shows, on the first `leads` leads."""
    import chartmogul

    config = chartmogul.Config(KEY)
    config.uri = sandbox.url + "/v1"
    before = len(sandbox.requests)
    started = time.monotonic()
    source = chartmogul.DataSource.create(config, data={"name": "Baseline"}).get()
    plan_uuids = [
        chartmogul.Plan.create(
            config,
            data={
                "data_source_uuid": source.uuid,
                "name": f"Plan {i}",
                "interval_count": 1,
                "interval_unit": "month",
                "external_id": f"plan_{i}",
            },
        )
        .get()
        .uuid
        for i in range(PLANS)
    ]
    for i in range(leads):
        customer = chartmogul.Customer.create(
            config,
            data={
                "data_source_uuid": source.uuid,
                "external_id": f"lead_{i:07d}",
                "name": f"Company {i}",
                "email": f"owner{i}@c{i}.example",
                "country": "US",
                "lead_created_at": "2025-01-01T00:00:00Z",
                "free_trial_started_at": "2025-01-02T00:00:00Z",
            },
        ).get()
        invoice = {
            "external_id": f"trial_{i:07d}",
            "date": "2025-01-02T00:00:00Z",
            "currency": "USD",
            "line_items": [
                {
                    "type": "trial",
                    "amount_in_cents": 0,
                    "quantity": 1,
                    "external_id": f"trial_{i:07d}",
                    "subscription_external_id": f"sub_{i:07d}",
                    "plan_uuid": plan_uuids[i % PLANS],
                    "service_period_start": "2025-01-02T00:00:00Z",
                    "service_period_end": "2025-01-16T00:00:00Z",
                }
            ],
        }
        chartmogul.Invoice.create(config, uuid=customer.uuid, data={"invoices": [invoice]}).get()
    seconds = time.monotonic() - started
    objects = 2 * leads + PLANS
    return {
        "leads": leads,
        "seconds": seconds,
        "requests": len(sandbox.requests) - before,
        "rate": objects / seconds,
    }


def measure_parse(repeats: int) -> dict[str, float]:
    """Each DAG file's parse time as DagBag reports it (median over fresh processes)."""
    # One file per DagBag: its one FileLoadStat is that file's parse, imports of the file included.
    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(sum(s.duration.total_seconds() for s in bag.dagbag_stats))\n"
    )
    home = tempfile.mkdtemp(prefix="bench-airflow-")
    environment = {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    samples: dict[str, list[float]] = {name: [] for name in DAG_FILES}
    for _ in range(repeats):
        for name in DAG_FILES:
            done = subprocess.run(
                [sys.executable, "-c", code, str(REPO / "dags" / name)],
                capture_output=True,
                text=True,
                env=environment,
                timeout=300,
                check=True,
            )
            samples[name].append(float(done.stdout.strip().splitlines()[-1]))
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_dry_run(leads: int, repeats: int) -> dict[str, Any]:
    """`bench_sync.py`'s 1M-lead dry run (fresh processes); median time, peak RSS, validation rows/s."""
    import bench_sync

    folder = Path(tempfile.mkdtemp(prefix="bench-dry-run-"))
    result = bench_sync.measure_dry_run(folder, leads=leads, repeats=repeats, plugins=REPO / "plugins")
    runs = result["runs"]
    rows = sum(runs[0]["extracted"].values())
    return {
        "leads": leads,
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "validation_rows_per_second": statistics.median(
            rows / r["steps"]["extract_and_validate"] for r in runs
        ),
    }


def report(figures: dict[str, Any]) -> tuple[str, list[str]]:
    """The Markdown table (figures and goals side by side) and the goals missed."""
    first, nightly, baseline = (
        figures["mogulflow"]["first"],
        figures["mogulflow"]["nightly"],
        figures["baseline"],
    )
    configured = figures["mogulflow"]["configured_rps"]
    leads = figures["leads"]
    objects = 2 * leads + PLANS
    per_object_limit = objects / API_RATE_LIMIT
    ratio = per_object_limit / first["seconds"]
    baseline_seconds = objects / baseline["rate"]
    pace = {
        name: step["rate"] / configured for name, step in nightly["steps"].items() if step["requests"] > 1
    }
    changed_rows = nightly["changed_leads"] + nightly["changed_trials"]
    lowest = min(pace.values(), default=0.0)
    dry, parse = figures["dry_run"], figures["parse"]
    missed = []
    if ratio < GOAL_FIRST_LOAD_RATIO:
        missed.append(f"first load {ratio:.1f}x the per-object limit (goal >= {GOAL_FIRST_LOAD_RATIO:.0f}x)")
    if min(pace.values(), default=0.0) < GOAL_NIGHTLY_PACE:
        missed.append(f"nightly pace {min(pace.values(), default=0):.0%} of configured (goal >= 90%)")
    if nightly["requests_per_changed_trial"] > GOAL_REQUESTS_PER_CHANGED_TRIAL:
        missed.append(f"{nightly['requests_per_changed_trial']:.2f} requests per changed trial (goal <= 2)")
    if dry and dry["peak_rss_mib"] >= GOAL_DRY_RUN_PEAK_MIB:
        missed.append(
            f"1M dry run peaked at {dry['peak_rss_mib']:,.0f} MiB (goal < {GOAL_DRY_RUN_PEAK_MIB:.0f})"
        )
    for name, seconds in parse.items():
        if seconds >= GOAL_PARSE_SECONDS:
            missed.append(f"{name} parses in {seconds:.2f} s (goal < {GOAL_PARSE_SECONDS} s)")

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    steps = ", ".join(
        f"{name} {step['rate']:.1f}" for name, step in nightly["steps"].items() if step["requests"] > 1
    )
    lines = [
        f"Measured by `make bench` (`bench/bench_scale.py`) on {figures['date']}: "
        f"`nproc` = {figures['nproc']}, "
        f"Python {figures['python']}. Sandbox with ChartMogul's limits on ({API_RATE_LIMIT:.0f} req/s, "
        f"{API_MAX_CONNECTIONS} connections, {LATENCY_SECONDS * 1000:.0f} ms latency, JSON imports applied "
        f"{JSON_IMPORT_DELAY_SECONDS:.0f} s after they are queued); mogulflow's client at its defaults "
        f"({configured:.0f} req/s, 10 connections). Other work may share the machine: figures move by ±10%.",
        "",
        "| what | measured | goal | |",
        "|---|---|---|---|",
        f"| first load, {leads:,} leads + {leads:,} trials + {PLANS} plans: wall time | "
        f"{first['seconds']:.1f} s, "
        f"{first['requests']:,} requests | | |",
        f"| first load vs the per-object limit ({objects:,} objects / 40 req/s = "
        f"{per_object_limit:,.0f} s) | "
        f"**{ratio:.1f}×** | ≥ {GOAL_FIRST_LOAD_RATIO:.0f}× | {met(ratio >= GOAL_FIRST_LOAD_RATIO)} |",
        f"| baseline: official `chartmogul` client, one object at a time, {baseline['leads']:,} leads | "
        f"{baseline['seconds']:.1f} s, {baseline['requests']:,} requests ({baseline['rate']:.1f} objects/s); "
        f"extrapolated to {objects:,} objects: {baseline_seconds:,.0f} s | | |",
        f"| mogulflow ÷ baseline (extrapolated) | "
        f"**{baseline_seconds / first['seconds']:.0f}× faster** | | |",
        f"| nightly, {CHANGED_SHARE:.0%} changed ({nightly['changed_leads']} e-mails, "
        f"{nightly['changed_trials']} "
        f"trial quantities): writes per changed row | {nightly['writes'] / changed_rows:.2f} "
        f"({nightly['writes']} writes, {nightly['requests']} requests) | | |",
        f"| nightly: requests per changed trial | **{nightly['requests_per_changed_trial']:.2f}** | ≤ 2 | "
        f"{met(nightly['requests_per_changed_trial'] <= GOAL_REQUESTS_PER_CHANGED_TRIAL)} |",
        f"| nightly: achieved req/s per load step vs {configured:.0f} configured | {steps} "
        f"(lowest {lowest:.0%}) | ≥ 90% | {met(lowest >= GOAL_NIGHTLY_PACE)} |",
    ]
    if dry:
        lines += [
            f"| {dry['leads']:,}-lead dry run: time / peak memory | {dry['seconds']:.1f} s / "
            f"**{dry['peak_rss_mib']:,.0f} MiB** | < {GOAL_DRY_RUN_PEAK_MIB:.0f} MiB | "
            f"{met(dry['peak_rss_mib'] < GOAL_DRY_RUN_PEAK_MIB)} |",
            f"| validation (extract + validate) | {dry['validation_rows_per_second']:,.0f} rows/s | | |",
        ]
    for name, seconds in parse.items():
        lines.append(
            f"| DagBag parse time, `dags/{name}` | {seconds:.2f} s | < {GOAL_PARSE_SECONDS} s | "
            f"{met(seconds < GOAL_PARSE_SECONDS)} |"
        )
    lines += [
        "",
        "Medians where repeated (dry run and parse: fresh processes). The baseline's rate is extrapolated.",
    ]
    return "\n".join(lines) + "\n", missed


def main() -> int:
    """Run every measurement, print and write the table; 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--baseline-leads", type=int, default=1000)
    parser.add_argument("--dry-run-leads", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="dry runs and parses, in fresh processes")
    parser.add_argument("--quick", action="store_true", help="2,000 leads, 100 baseline, no dry run")
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench_table.py)")
    args = parser.parse_args()
    if args.quick:
        args.leads, args.baseline_leads, args.dry_run_leads, args.repeats = 2000, 100, 0, 1
    from mogulflow_sandbox import Faults, SandboxServer

    faults = Faults(
        rate_limit_per_second=API_RATE_LIMIT,
        max_parallel=API_MAX_CONNECTIONS,
        latency_seconds=LATENCY_SECONDS,
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    with SandboxServer(
        port=0, api_key=KEY, faults=faults, json_import_delay_seconds=JSON_IMPORT_DELAY_SECONDS
    ) as sandbox:
        mogulflow = measure_mogulflow(folder, args.leads, sandbox)
        baseline = measure_baseline(args.baseline_leads, sandbox)
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "leads": args.leads,
        "mogulflow": mogulflow,
        "baseline": baseline,
        "dry_run": measure_dry_run(args.dry_run_leads, args.repeats) if args.dry_run_leads else None,
        "parse": measure_parse(args.repeats),
    }
    table, missed = report(figures)
    figures["missed"] = missed
    print(json.dumps(figures, indent=1, default=str))
    print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    for goal in missed:
        print(f"GOAL MISSED: {goal}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
