"""Benchmark the sync engine (a script, not a test): writes per changed row, and a 1M-lead dry run.

1. Steady state: a sample warehouse (3,000 leads), the local sandbox, the Airflow-free steps of
   `mogulflow.sync.leads_trials` with a real `ChartMogulClient`. A first full sync, then N leads get a new
   e-mail and the sync runs again (goal: exactly 1 write request per changed row, none for the
   others), then it runs once more over the unchanged warehouse (goal: 0 write requests).
2. 1M-lead dry run: a 1,000,000-lead DuckDB sample (built and timed in its own process), then
   `extract_and_validate` and the dry-run planning of plans, customers and trial invoices (no data
   source, no client) in a fresh process per repeat: its wall time and peak RSS (goal: under 60 s
   and under 1 GiB on the 2-core development machine). The median of the repeats is reported.

Loopback only; every child process is bounded in time. Prints a table; exits 1 if a goal is missed.

    .venv/bin/python bench/bench_sync.py [--leads 1000000] [--repeats 3] [--changed 100] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Last, so that a PYTHONPATH (a dry-run child measuring another plugins folder) comes first.
sys.path.append(str(REPO / "plugins"))

GOAL_WRITES_PER_CHANGED_ROW = 1.0
GOAL_WRITES_UNCHANGED = 0
GOAL_DRY_RUN_SECONDS = 60.0
GOAL_DRY_RUN_PEAK_MIB = 1024.0
CHILD_TIMEOUT_SECONDS = 300
# The sandbox has no rate limit of its own; the bench paces far above the real API's 35 req/s.
REQUESTS_PER_SECOND = 2000.0
# Any moment after the sample's rows (they all lie in 2025) and before today.
RUN_STARTED_AT = datetime(2025, 11, 15, tzinfo=UTC)
# A first sync creates its customers and invoices through JSON imports; the sandbox's default 0.5 s
# per import only stretches the bench.
JSON_IMPORT_DELAY = 0.1
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# --- 1. steady state --------------------------------------------------------------------------------


def _sync_once(warehouse: Any, client: Any, run_id: str) -> dict[str, Any]:
    """One full-refresh run of the loading steps, as the DAG's tasks call them."""
    from mogulflow.chartmogul.data_sources import ensure_data_source
    from mogulflow.load.entity_step import StepInputs
    from mogulflow.sync import leads_trials as sync
    from mogulflow.values.run_settings import resolve_settings

    settings = resolve_settings(
        {"full_refresh": True, "data_source_name": "Bench leads"},
        run_id=run_id,
        dag_id="bench_sync",
        data_interval_start=None,
        data_interval_end=None,
        started_at=RUN_STARTED_AT,
    )
    data_source_uuid = ensure_data_source(client, settings.data_source_name, dry_run=False)
    report = sync.extract_and_validate(warehouse, settings, data_source_uuid)
    inputs = StepInputs(warehouse, client, settings, data_source_uuid, report)
    return {str(entity): sync.load_entity(inputs, entity) for entity in sync.LOADED_ENTITIES}


def _change_emails(warehouse_path: Path, rows: int) -> int:
    """Give `rows` valid leads (lowest ids first) a new e-mail address; answers how many changed."""
    import duckdb

    with duckdb.connect(str(warehouse_path)) as connection:
        connection.execute(
            """
            UPDATE leads SET email = 'changed.' || lead_id || '@bench.example',
                             updated_at = TIMESTAMP '2025-11-01 00:00:00'
            WHERE lead_id IN (
                SELECT lead_id FROM leads
                WHERE lead_id LIKE 'lead\\_0%' ESCAPE '\\' AND email IS NOT NULL
                GROUP BY lead_id HAVING count(*) = 1
                ORDER BY lead_id LIMIT ?
            )
            """,
            [rows],
        )
        return connection.execute(
            "SELECT count(*) FROM leads WHERE email LIKE 'changed.%@bench.example'"
        ).fetchone()[0]


def _writes(requests: list[Any]) -> list[Any]:
    return [r for r in requests if r.method in WRITE_METHODS]


def measure_steady_state(folder: Path, *, leads: int, changed: int) -> dict[str, Any]:
    """First sync, sync after `changed` e-mail changes, sync over an unchanged warehouse."""
    from mogulflow.chartmogul import ChartMogulClient
    from mogulflow.warehouse.connection import Warehouse
    from mogulflow_demo.sample_warehouse import build_sample_warehouse
    from mogulflow_sandbox import SandboxServer

    os.environ["MOGULFLOW_STAGING_DIR"] = str(folder / "staging")
    warehouse_path = folder / "steady.duckdb"
    build_sample_warehouse(warehouse_path, leads=leads)
    runs: list[dict[str, Any]] = []
    with (
        SandboxServer(port=0, api_key="bench-key", json_import_delay_seconds=JSON_IMPORT_DELAY) as sandbox,
        ChartMogulClient(
            base_url=sandbox.url, api_key="bench-key", requests_per_second=REQUESTS_PER_SECOND
        ) as client,
    ):
        for run_id, change in (("first", 0), ("changed", changed), ("unchanged", 0)):
            changed_rows = _change_emails(warehouse_path, change) if change else 0
            before = len(sandbox.requests)
            started = time.monotonic()
            warehouse = Warehouse.open_duckdb(str(warehouse_path))
            try:
                reports = _sync_once(warehouse, client, run_id)
            finally:
                warehouse.close()
            elapsed = time.monotonic() - started
            requests = sandbox.requests[before:]
            writes = _writes(requests)
            runs.append(
                {
                    "run": run_id,
                    "changed_rows": changed_rows,
                    "seconds": elapsed,
                    "requests": len(requests),
                    "writes": len(writes),
                    "writes_by_method": _count(f"{r.method} {_route(r.path)}" for r in writes),
                    "loaded": {
                        name: {
                            "created": report.created,
                            "updated": report.updated,
                            "unchanged": report.unchanged,
                            "failed": report.failed,
                        }
                        for name, report in reports.items()
                    },
                }
            )
    return {"leads": leads, "runs": runs}


def _route(path: str) -> str:
    """'/v1/customers/cus_123' → '/v1/customers/{id}': groups the log by endpoint."""
    parts = path.split("/")
    return "/".join(
        "{id}" if "_" in part and part[:3] in {"cus", "inv", "pl_", "ds_"} else part for part in parts
    )


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items()))


# --- 2. 1M-lead dry run -----------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_build_sample(path: str, leads: int) -> dict[str, Any]:
    """(In a child process.) Build the sample warehouse; its time and peak RSS."""
    from mogulflow_demo.sample_warehouse import build_sample_warehouse

    started = time.perf_counter()
    stats = build_sample_warehouse(path, leads=leads)
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": _peak_rss_mib(),
        "rows": dict(stats.rows),
    }


def child_dry_run(path: str) -> dict[str, Any]:
    """(In a fresh child process.) Extract, validate and plan every entity as a dry run; time each step."""
    process_started = time.perf_counter()
    from mogulflow.load.entity_step import StepInputs
    from mogulflow.sync import leads_trials as sync
    from mogulflow.values.run_settings import resolve_settings
    from mogulflow.warehouse.connection import Warehouse

    imported = time.perf_counter()
    settings = resolve_settings(
        {"full_refresh": True, "dry_run": True},
        run_id="bench_dry_run",
        dag_id="bench_sync",
        data_interval_start=None,
        data_interval_end=None,
        started_at=RUN_STARTED_AT,
    )
    warehouse = Warehouse.open_duckdb(path)
    steps: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    try:
        moment = time.perf_counter()
        report = sync.extract_and_validate(warehouse, settings, None)
        steps["extract_and_validate"] = time.perf_counter() - moment
        inputs = StepInputs(warehouse, None, settings, None, report)  # type: ignore[arg-type]: a dry run
        for entity in sync.LOADED_ENTITIES:
            moment = time.perf_counter()
            result = sync.load_entity(inputs, entity)
            steps[f"load {entity}"] = time.perf_counter() - moment
            counts[str(entity)] = {
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
            }
    finally:
        warehouse.close()
    finished = time.perf_counter()
    return {
        "mogulflow": str(Path(sync.__file__).parent),
        "import_seconds": imported - process_started,
        "seconds": finished - imported,
        "steps": steps,
        "peak_rss_mib": _peak_rss_mib(),
        "extracted": {str(entity): part.extracted for entity, part in report.parts.items()},
        "valid": {str(entity): part.valid for entity, part in report.parts.items()},
        "planned": counts,
    }


def _run_child(mode: str, *arguments: str, staging: Path, plugins: Path) -> dict[str, Any]:
    """Run this script in a fresh interpreter in `mode`; its JSON answer plus its wall time."""
    environment = {**os.environ, "PYTHONPATH": str(plugins), "MOGULFLOW_STAGING_DIR": str(staging)}
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"the {mode} child failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    answer["process_seconds"] = wall
    return answer


def measure_dry_run(folder: Path, *, leads: int, repeats: int, plugins: Path) -> dict[str, Any]:
    """Build the sample once (timed), then the dry run `repeats` times, each in a fresh process."""
    warehouse_path = folder / f"leads_{leads}.duckdb"
    staging = folder / "staging"
    built = _run_child("build", str(warehouse_path), str(leads), staging=staging, plugins=REPO / "plugins")
    runs = []
    for _ in range(repeats):
        runs.append(_run_child("dry-run", str(warehouse_path), staging=staging, plugins=plugins))
        shutil.rmtree(staging, ignore_errors=True)
    return {"leads": leads, "build": built, "runs": runs}


# --- report -----------------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(steady: dict[str, Any] | None, dry: dict[str, Any] | None) -> list[str]:
    """Print both tables; answer the goals that were missed."""
    missed: list[str] = []
    if steady is not None:
        print(
            f"Steady state ({steady['leads']:,}-lead sample, sandbox on loopback, "
            f"{REQUESTS_PER_SECOND:.0f} req/s)"
        )
        print(
            f"{'run':<10} {'changed':>8} {'requests':>9} {'writes':>7} {'writes/changed':>15} {'seconds':>8}"
        )
        for run in steady["runs"]:
            ratio = run["writes"] / run["changed_rows"] if run["changed_rows"] else None
            shown = f"{ratio:.2f}" if ratio is not None else "-"
            print(
                f"{run['run']:<10} {run['changed_rows']:>8} {run['requests']:>9} {run['writes']:>7} "
                f"{shown:>15} {run['seconds']:>8.1f}"
            )
        by_run = {run["run"]: run for run in steady["runs"]}
        changed = by_run["changed"]
        ratio = changed["writes"] / changed["changed_rows"] if changed["changed_rows"] else float("inf")
        print(f"  writes of the 'changed' run: {changed['writes_by_method']}")
        if ratio != GOAL_WRITES_PER_CHANGED_ROW:
            missed.append(f"{ratio:.2f} write requests per changed row (goal {GOAL_WRITES_PER_CHANGED_ROW})")
        if by_run["unchanged"]["writes"] != GOAL_WRITES_UNCHANGED:
            missed.append(
                f"{by_run['unchanged']['writes']} write requests for an unchanged warehouse (goal 0)"
            )
        print()
    if dry is not None:
        build = dry["build"]
        print(
            f"Dry run of {dry['leads']:,} leads ({os.cpu_count()} cores); sample built in "
            f"{build['seconds']:.1f} s (peak {build['peak_rss_mib']:,.0f} MiB), "
            f"rows {build['rows']}"
        )
        print(f"mogulflow imported from {dry['runs'][0]['mogulflow']}")
        names = list(dry["runs"][0]["steps"])
        header = " ".join(f"{name:>22}" for name in names)
        print(f"{'repeat':<7} {header} {'pipeline s':>11} {'process s':>10} {'peak MiB':>9}")
        for number, run in enumerate(dry["runs"], start=1):
            steps = " ".join(f"{run['steps'][name]:>22.1f}" for name in names)
            print(
                f"{number:<7} {steps} {run['seconds']:>11.1f} {run['process_seconds']:>10.1f} "
                f"{run['peak_rss_mib']:>9,.0f}"
            )
        seconds, peak = _median(dry["runs"], "seconds"), _median(dry["runs"], "peak_rss_mib")
        process = _median(dry["runs"], "process_seconds")
        print(
            f"median  pipeline {seconds:.1f} s (process {process:.1f} s, "
            f"goal < {GOAL_DRY_RUN_SECONDS:.0f} s), "
            f"peak RSS {peak:,.0f} MiB (goal < {GOAL_DRY_RUN_PEAK_MIB:,.0f} MiB)"
        )
        print(f"  planned: {dry['runs'][0]['planned']}")
        if seconds >= GOAL_DRY_RUN_SECONDS:
            missed.append(f"dry run took {seconds:.1f} s (goal < {GOAL_DRY_RUN_SECONDS:.0f} s)")
        if peak >= GOAL_DRY_RUN_PEAK_MIB:
            missed.append(f"dry run peaked at {peak:,.0f} MiB (goal < {GOAL_DRY_RUN_PEAK_MIB:,.0f} MiB)")
    return missed


def main() -> int:
    """Run the benchmarks; 0 when every goal is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="leads in the dry-run sample")
    parser.add_argument("--repeats", type=int, default=3, help="dry runs, each in a fresh process")
    parser.add_argument("--steady-leads", type=int, default=3000, help="leads in the steady-state sample")
    parser.add_argument("--changed", type=int, default=100, help="leads whose e-mail changes")
    parser.add_argument("--skip-steady", action="store_true")
    parser.add_argument("--skip-dry-run", action="store_true")
    parser.add_argument("--quick", action="store_true", help="200,000 leads, one repeat")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--plugins",
        type=Path,
        default=REPO / "plugins",
        help="the plugins folder the dry runs import mogulflow from (to measure a candidate change)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        mode, *rest = args.child
        answer = child_build_sample(rest[0], int(rest[1])) if mode == "build" else child_dry_run(rest[0])
        print(json.dumps(answer))
        return 0

    leads, repeats = (200_000, 1) if args.quick else (args.leads, args.repeats)
    folder = Path(tempfile.mkdtemp(prefix="mogulflow-bench-"))
    try:
        steady = (
            None
            if args.skip_steady
            else measure_steady_state(folder, leads=args.steady_leads, changed=args.changed)
        )
        dry = (
            None
            if args.skip_dry_run
            else measure_dry_run(folder, leads=leads, repeats=repeats, plugins=args.plugins.resolve())
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    missed = report(steady, dry)
    if args.json:
        args.json.write_text(json.dumps({"steady_state": steady, "dry_run": dry}, indent=2, default=str))
    for goal in missed:
        print(f"GOAL MISSED: {goal}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
