"""`mogulflow preflight`: check a setup before the first night, every problem at once.

Both connections resolve and have the right type; the API key works; every extract SQL runs against
the warehouse and returns the columns mogulflow needs; mogulflow's own tables can be created.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mogulflow.airflow.preflight import airflow_checks
from mogulflow.values.constants import (
    CHARTMOGUL_CONN_ID,
    LEADS_TRIALS_DAG_ID,
    MERGE_DAG_ID,
    WAREHOUSE_CONN_ID,
)
from mogulflow.values.pipelines import CONVERSION_ENTITIES, LEADS_TRIALS_ENTITIES


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow preflight") -> int:
    """Print what passed and every problem; exit 1 when there is a problem."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dag",
        choices=(LEADS_TRIALS_DAG_ID, MERGE_DAG_ID),
        default=LEADS_TRIALS_DAG_ID,
        help=f"which DAG's tables to check (default: {LEADS_TRIALS_DAG_ID})",
    )
    parser.add_argument("--warehouse-conn-id", default=WAREHOUSE_CONN_ID)
    parser.add_argument("--chartmogul-conn-id", default=CHARTMOGUL_CONN_ID)
    args = parser.parse_args(argv)
    entities = CONVERSION_ENTITIES if args.dag == MERGE_DAG_ID else LEADS_TRIALS_ENTITIES
    report = airflow_checks(
        entities, warehouse_conn_id=args.warehouse_conn_id, chartmogul_conn_id=args.chartmogul_conn_id
    )
    for line in report.checked:
        print(f"ok       {line}")
    for problem in report.problems:
        print(f"PROBLEM  {problem}" + ("" if problem.permanent else "  (an outage: retried by the run)"))
    print("ready for a run" if report.ok else f"{len(report.problems)} problem(s) to fix before a run")
    return 0 if report.ok else 1
