"""The run summary a person reads: `mogulflow report --duckdb PATH [--run-id ID]`.

Reads `mogulflow_runs` (and the rejects' location) from the warehouse; prints per entity
extracted / rejected (by rule) / created / updated / unchanged / failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mogulflow.values.constants import REJECTS_TABLE, RUNS_TABLE
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.run_records import COUNT_FIELDS, RUN_COLUMN_PREFIX


def latest_run(warehouse: Warehouse, run_id: str | None = None) -> Mapping[str, Any] | None:
    """The newest row of `mogulflow_runs` (or the one with `run_id`), as a dict."""
    if not warehouse.table_exists(RUNS_TABLE):
        return None
    if run_id:
        frame = warehouse.query_frame(
            f"SELECT * FROM {RUNS_TABLE} WHERE run_id = :run_id", {"run_id": run_id}
        )
    else:
        frame = warehouse.query_frame(f"SELECT * FROM {RUNS_TABLE} ORDER BY finished_at DESC LIMIT 1")
    return None if frame.empty else frame.iloc[0].to_dict()


def render_run(run: Mapping[str, Any], *, warehouse_label: str) -> str:
    """A plain-text account of one run."""
    details = json.loads(run.get("details") or "{}")
    window = "full refresh" if run["full_refresh"] else f"{run['window_start']} → {run['window_end']}"
    lines = [
        "",
        f"mogulflow run {run['run_id']} ({run['dag_id']})",
        f"  window:      {window}{'   [dry run: nothing written]' if run['dry_run'] else ''}",
        f"  data source: {run.get('data_source_name')} ({run.get('data_source_uuid') or 'not created'})",
        f"  outcome:     {run['outcome']}: {run.get('message') or ''}",
        "",
    ]
    header = f"  {'entity':<12}" + "".join(f"{name:>11}" for name in COUNT_FIELDS)
    lines.append(header)
    lines.append("  " + "-" * (len(header) - 2))
    for prefix in RUN_COLUMN_PREFIX.values():
        values = [int(run.get(f"{prefix}_{name}") or 0) for name in COUNT_FIELDS]
        if prefix in ("conversions", "attributes", "tags") and not any(values):
            continue  # not this DAG's entity, or an optional table that is not there
        lines.append(f"  {prefix:<12}" + "".join(f"{v:>11}" for v in values))
    by_rule: Mapping[str, Mapping[str, int]] = details.get("rejects_by_rule", {})
    if by_rule:
        lines += ["", "  rejected rows by rule:"]
        for entity, rules in by_rule.items():
            for rule, count in rules.items():
                lines.append(f"    {entity:<10} {count:>6}  {rule}")
        lines += [
            "",
            f"  every rejected row, with its reason: table {REJECTS_TABLE} in {warehouse_label}",
            f"    SELECT entity, source_id, reason FROM {REJECTS_TABLE} WHERE run_id = '{run['run_id']}';",
        ]
    errors: Mapping[str, list[Mapping[str, Any]]] = details.get("api_errors", {})
    if errors:
        lines += ["", "  API errors (first few):"]
        for entity, items in errors.items():
            for item in items:
                lines.append(f"    {entity:<10} {item.get('external_id')}: {item.get('message')}")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow report") -> int:
    """Print the newest run's account; exit 1 when there is none."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--duckdb", required=True, help="path of the DuckDB warehouse")
    parser.add_argument("--run-id", help="a specific run (default: the newest)")
    args = parser.parse_args(argv)
    warehouse = Warehouse.open_duckdb(args.duckdb)
    try:
        run = latest_run(warehouse, args.run_id)
    finally:
        warehouse.close()
    if run is None:
        print(f"no run recorded in {args.duckdb}", file=sys.stderr)
        return 1
    print(render_run(run, warehouse_label=args.duckdb))
    return 0
