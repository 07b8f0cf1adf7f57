"""What tests hand Airflow: connections in the JSON form `AIRFLOW_CONN_*` takes, and a DAG run's conf."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEST_API_KEY = "test-key-abcdef"

# dag.test() writes a run's conf into the DAG's own Param objects, so every run names every param
# of chartmogul_leads_trials (or one run's value would carry over to the next run of that DAG).
FULL_REFRESH_CONF: Mapping[str, Any] = {
    "full_refresh": True,
    "start": None,
    "end": None,
    "dry_run": False,
    "data_source_name": "Leads",
    "max_reject_ratio": 0.5,
    "min_rejects_to_fail": 2,
    "reconcile": False,
    "mirror_deletes": False,
    "max_delete_ratio": 0.01,
    "approve_deletes": False,
}


def duckdb_connection(path: str | Path) -> dict[str, Any]:
    """A `duckdb` warehouse connection to the file at `path`."""
    return {"conn_type": "duckdb", "host": str(path)}


def postgres_connection(database: Mapping[str, Any]) -> dict[str, Any]:
    """A `postgres` warehouse connection to a database as the `postgres_database` fixture gives it."""
    return {
        "conn_type": "postgres",
        "host": database["host"],
        "port": database["port"],
        "login": database["user"],
        "schema": database["dbname"],
    }


def chartmogul_connection(url: str, key: str = TEST_API_KEY) -> dict[str, Any]:
    """A `chartmogul` connection to the sandbox (or any server) at `url`."""
    return {"conn_type": "chartmogul", "host": url, "password": key}
