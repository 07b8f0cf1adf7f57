"""Connections turned into a warehouse: the DuckDB file lock held by a concurrent run is waited for."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from mogulflow.airflow import resources
from mogulflow.airflow.resources import DUCKDB_LOCK_WAIT_ENV, open_warehouse

HOLD_LOCK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
connection.close()
"""


@pytest.fixture
def duckdb_connection(monkeypatch, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "duckdb", "host": str(path)})
    )
    return path


def hold_lock(path) -> subprocess.Popen:
    """Another process holding the DuckDB file's lock until `release`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen) -> None:
    if not holder.stdin.closed:
        holder.stdin.close()
    holder.wait(timeout=30)


def test_task_waits_for_the_duckdb_lock_of_a_concurrent_run(monkeypatch, duckdb_connection):
    holder = hold_lock(duckdb_connection)
    waits = []

    def concurrent_run_ends_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        release(holder)

    monkeypatch.setattr(
        resources,
        "time",
        SimpleNamespace(monotonic=time.monotonic, sleep=concurrent_run_ends_while_waiting),
    )
    try:
        warehouse = open_warehouse()
    finally:
        release(holder)
    try:
        assert warehouse.scalar("SELECT 42") == 42
    finally:
        warehouse.close()
    assert waits == [0.5]  # found it locked, waited, and opened it once the other run was over


def test_lock_held_longer_than_the_wait_fails_with_duckdbs_error(monkeypatch, duckdb_connection):
    import duckdb

    monkeypatch.setenv(DUCKDB_LOCK_WAIT_ENV, "1")
    holder = hold_lock(duckdb_connection)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            open_warehouse()
    finally:
        release(holder)


def test_unsupported_connection_type_is_named_in_the_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "mysql", "host": "db"}))
    with pytest.raises(ValueError, match=r"'mysql'.*duckdb.*postgres"):
        open_warehouse()
