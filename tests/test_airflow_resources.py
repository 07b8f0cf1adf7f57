"""Connections turned into a warehouse: the DuckDB file lock held by a concurrent run is waited for."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from mogulflow.airflow.resources import DUCKDB_LOCK_WAIT_ENV, open_warehouse

HOLD_LOCK = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


@pytest.fixture
def duckdb_connection(monkeypatch, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "duckdb", "host": str(path)})
    )
    return path


def hold_lock(path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_task_waits_for_the_duckdb_lock_of_a_concurrent_run(duckdb_connection):
    holder = hold_lock(duckdb_connection, 1.5)
    started = time.monotonic()
    warehouse = open_warehouse()
    try:
        assert warehouse.scalar("SELECT 42") == 42
    finally:
        warehouse.close()
        holder.wait(timeout=30)
    assert time.monotonic() - started >= 1.0


def test_lock_held_longer_than_the_wait_fails_with_duckdbs_error(monkeypatch, duckdb_connection):
    import duckdb

    monkeypatch.setenv(DUCKDB_LOCK_WAIT_ENV, "1")
    holder = hold_lock(duckdb_connection, 5)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            open_warehouse()
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_unsupported_connection_type_is_named_in_the_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "mysql", "host": "db"}))
    with pytest.raises(ValueError, match=r"'mysql'.*duckdb.*postgres"):
        open_warehouse()
