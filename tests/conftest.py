"""Test set-up shared by the whole suite.

Airflow reads its configuration when first imported, so the environment is set here, at the top,
before any test module can import it: a throwaway AIRFLOW_HOME with its own SQLite metadata DB,
this repository's dags/ and plugins/, no examples.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mogulflow-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.setdefault("MOGULFLOW_TASK_RETRIES", "0")
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The suite's throwaway AIRFLOW_HOME."""
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """A migrated Airflow metadata DB (needed by dag.test()) with the chartmogul_api pool."""
    from airflow.utils import db

    db.resetdb()
    from mogulflow.airflow.resources import ensure_pool

    ensure_pool()
    return airflow_home / "airflow.db"


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    """A DuckDB warehouse holding the hand-written rows of `sample_rows` (modules may override it)."""
    from sample_rows import build_warehouse

    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    return path


@pytest.fixture
def sandbox() -> Iterator:
    """A fresh ChartMogul sandbox served over real HTTP on a free loopback port."""
    from mogulflow_sandbox import SandboxServer

    with SandboxServer(port=0) as server:
        yield server


@pytest.fixture
def connections(monkeypatch, sandbox, warehouse_path) -> None:
    """`chartmogul_default` → the sandbox, `warehouse_default` → the DuckDB warehouse (as env vars)."""
    from airflow_setup import chartmogul_connection, duckdb_connection

    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", json.dumps(chartmogul_connection(sandbox.url)))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps(duckdb_connection(warehouse_path)))


POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# The machine's own start command for its PostgreSQL cluster (Debian's pg_ctlcluster).
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _postgres_is_up() -> bool:
    import psycopg

    try:
        psycopg.connect(dbname="postgres", connect_timeout=3, **POSTGRES).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> dict:
    """The local PostgreSQL server (trust auth), started with the machine's command if it is down."""
    import subprocess
    import time

    if not _postgres_is_up():
        subprocess.run(POSTGRES_START, shell=True, check=False, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while not _postgres_is_up():
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is down and `{POSTGRES_START}` did not start it")
            time.sleep(0.5)
    return dict(POSTGRES)


@pytest.fixture
def postgres_database(postgres_server: dict) -> Iterator[dict]:
    """A throwaway database on the local server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"mogulflow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **postgres_server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**postgres_server, "dbname": name}
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **postgres_server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
