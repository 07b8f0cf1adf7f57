"""Benchmark the monitoring page at a million (issue 22): the page's queries and one id's lookup, on
DuckDB and on PostgreSQL, over a million-customer warehouse.

The warehouse is `million_account.py`'s (a million leads and trials, the sync state of a first load),
copied into a throwaway PostgreSQL database (127.0.0.1:5432, user postgres, trust) with COPY. Times
are what the page's handler spends in the warehouse: `queries.overview` for the last 30 days of
the sample's data (the page) and `queries.look_up` of a lead and of a trial (the lookup), medians
of `--repeats`, each on a fresh connection as a page request opens one. Goals: page < 2 s, lookup
< 0.3 s.

    .venv/bin/python bench/bench_monitor.py [--leads 1000000] [--small 20000] [--seeded DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "plugins"))
sys.path.append(str(Path(__file__).resolve().parent))

import million_account  # noqa: E402

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
TABLES = ("plans", "leads", "trials", "mogulflow_sync_state")
# The sample's leads and trials start in January 2025: the page shows that month.
PERIOD = (date(2025, 1, 1), date(2025, 1, 31))


def seeded_warehouse(folder: Path, leads: int, seeded: Path | None) -> Path:
    """A warehouse of `leads` synced leads and trials (copied from `seeded` when it holds one)."""
    path = folder / f"monitor-{leads}.duckdb"
    pristine = seeded / f"seeded-{leads}.duckdb" if seeded else None
    if pristine and pristine.exists():
        shutil.copyfile(pristine, path)
        return path
    million_account.build_warehouse(path, leads)
    million_account.seed_sync_state(path)
    if pristine:
        shutil.copyfile(path, pristine)
    return path


def copy_to_postgres(duckdb_path: Path, folder: Path) -> dict[str, Any]:
    """A new PostgreSQL database holding the same tables (mogulflow's own made by mogulflow); its DSN."""
    import psycopg

    from mogulflow.warehouse.connection import Warehouse
    from mogulflow.warehouse.own_tables import ensure_tables
    from mogulflow.warehouse.sql_files import read_sql

    dsn = {**POSTGRES, "dbname": f"mogulflow_bench_{uuid.uuid4().hex[:8]}"}
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'CREATE DATABASE "{dsn["dbname"]}"')
    with psycopg.connect(**dsn) as connection:
        connection.execute(read_sql("schema.sql"))
    warehouse = Warehouse(psycopg.connect(**dsn), "postgres")
    try:
        ensure_tables(warehouse)
    finally:
        warehouse.close()
    with duckdb.connect(str(duckdb_path), read_only=True) as source, psycopg.connect(**dsn) as target:
        for table in TABLES:
            csv = folder / f"{table}.csv"
            source.execute(f"COPY {table} TO '{csv}' (HEADER, DELIMITER ',')")
            columns = [row[0] for row in source.execute(f"DESCRIBE {table}").fetchall()]
            with (
                target.cursor() as cursor,
                csv.open("rb") as handle,
                cursor.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, HEADER)"
                ) as copy,
            ):
                while block := handle.read(1 << 20):
                    copy.write(block)
            csv.unlink()
        target.commit()
        target.autocommit = True
        target.execute("ANALYZE")
    return dsn


def drop_postgres(dsn: dict[str, Any]) -> None:
    """Drop the throwaway database."""
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dsn["dbname"]}" WITH (FORCE)')


def time_page(
    open_warehouse: Callable[[], Any], repeats: int, lead_id: str, trial_id: str
) -> dict[str, float]:
    """Median seconds of the page's queries and of one id's lookup (a lead's and a trial's, the slower)."""
    from mogulflow.monitor import queries
    from mogulflow.monitor.queries import Period

    period = Period(*PERIOD)
    pages: list[float] = []
    lookups: list[float] = []
    for _ in range(repeats):
        warehouse = open_warehouse()
        try:
            started = time.perf_counter()
            queries.overview(warehouse, period, grain="day")
            pages.append(time.perf_counter() - started)
            slowest = 0.0
            for source_id in (lead_id, trial_id):
                started = time.perf_counter()
                story = queries.look_up(warehouse, source_id)
                slowest = max(slowest, time.perf_counter() - started)
                assert story is not None
            lookups.append(slowest)
        finally:
            warehouse.close()
    return {
        "page": statistics.median(pages),
        "lookup": statistics.median(lookups),
        "pages": pages,
        "lookups": lookups,
    }


def measure(folder: Path, leads: int, seeded: Path | None, repeats: int) -> dict[str, dict[str, float]]:
    """Both warehouses' page and lookup times over an account of `leads`."""
    import psycopg

    from mogulflow.warehouse.connection import Warehouse

    path = seeded_warehouse(folder, leads, seeded)
    lead_id, trial_id = f"lead_{leads // 2:07d}", f"trial_{leads // 2:07d}"
    found = {"DuckDB": time_page(lambda: Warehouse.open_duckdb(str(path)), repeats, lead_id, trial_id)}
    dsn = copy_to_postgres(path, folder)
    try:
        found["PostgreSQL"] = time_page(
            lambda: Warehouse(psycopg.connect(**dsn), "postgres"), repeats, lead_id, trial_id
        )
    finally:
        drop_postgres(dsn)
    path.unlink()
    return found


def main() -> int:
    """Measure at both sizes, print (and write) the figures; 1 when a goal is missed at `--leads`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=20_000, help="the same at this size, beside it (0: not)")
    parser.add_argument("--seeded", type=Path, help="keep (and reuse) seeded warehouses in this folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    large = measure(folder, args.leads, args.seeded, args.repeats)
    small = measure(folder, args.small, args.seeded, args.repeats) if args.small else {}
    figures = {
        "leads": args.leads,
        "warehouses": {name: {"large": large[name], "small": small.get(name)} for name in large},
    }
    missed = [
        f"{name}: page {found['page']:.2f} s (goal < 2), lookup {found['lookup']:.3f} s (goal < 0.3)"
        for name, found in large.items()
        if found["page"] >= 2 or found["lookup"] >= 0.3
    ]
    figures["missed"] = missed
    text = json.dumps(figures, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text)
    for goal in missed:
        print(f"GOAL MISSED: {goal}")
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
