"""The first night: a wrong setup fails in seconds and says what to fix; outages are retried, mistakes
are not. Fast checks of the pieces (error sorting, params, the preflight against a real DuckDB file
and the sandbox), then `airflow dags test` end to end for each setup mistake."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import duckdb
import pytest
from airflow_setup import postgres_connection
from repo_paths import REPO
from sample_rows import build_warehouse

from mogulflow.chartmogul.errors import AuthenticationError, TransientError
from mogulflow.failures import describe, is_permanent
from mogulflow.sync.preflight import check_setup
from mogulflow.values.entities import Entity
from mogulflow.values.errors import SetupError
from mogulflow.values.pipelines import LEADS_TRIALS_ENTITIES
from mogulflow.values.run_settings import resolve_settings
from mogulflow.warehouse.connection import Warehouse

API_KEY = "first-night-key-0123456789"
LEADS_DAG = "chartmogul_leads_trials"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def keyed_sandbox():
    from mogulflow_sandbox import SandboxServer

    with SandboxServer(port=0, api_key=API_KEY) as server:
        yield server


def execute(path, sql: str) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute(sql)


def columns_of(path, table: str) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return [row[0] for row in connection.execute(f"SELECT * FROM {table} LIMIT 0").description]


def run_rows(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(
            "SELECT outcome, message FROM mogulflow_runs ORDER BY started_at"
        ).fetchall()


# ---- sorting errors ----------------------------------------------------------------------------


def duckdb_error(sql: str) -> Exception:
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE leads (lead_id TEXT)")
        try:
            connection.execute(sql)
        except duckdb.Error as error:
            return error
    raise AssertionError("the SQL ran")


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("GET /v1/ping → HTTP 401: No valid API key provided", status=401),
        SetupError("connection 'warehouse_default' has type 'sqlite'"),
        duckdb_error("SELECT email FROM leads"),  # a missing column
        duckdb_error("SELECT * FROM nowhere"),  # a missing table
        duckdb_error("SELEC lead_id FROM leads"),  # SQL that does not parse
        FileNotFoundError("SQL template /x/extract_leads.sql is missing"),
    ],
    ids=["refused-key", "setup", "missing-column", "missing-table", "bad-sql", "missing-sql-file"],
)
def test_mistakes_are_permanent(error):
    assert is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [
        TransientError("GET /v1/ping → connection refused", status=None),
        TransientError("GET /v1/ping → HTTP 503", status=503),
        ConnectionRefusedError("refused"),
        TimeoutError("timed out"),
    ],
    ids=["refused", "5xx", "os-refused", "timeout"],
)
def test_outages_are_retried(error):
    assert not is_permanent(error)


def test_a_refused_key_says_where_to_put_a_valid_one():
    message = describe(AuthenticationError("GET /v1/ping → HTTP 401: No valid API key provided", status=401))
    assert "HTTP 401" in message and "password" in message and "\n" not in message


# ---- params ------------------------------------------------------------------------------------


def settings(**params):
    return resolve_settings(
        params, run_id="r", dag_id=LEADS_DAG, data_interval_start=None, data_interval_end=None
    )


def test_end_before_start_fails_with_one_line_that_says_so():
    with pytest.raises(SetupError, match=r"param 'end' \(2025-03-01.*\) is before 'start' \(2025-03-08"):
        settings(start="2025-03-08T00:00:00Z", end="2025-03-01T00:00:00Z")


def test_a_window_together_with_full_refresh_fails():
    with pytest.raises(SetupError, match="exclude each other"):
        settings(full_refresh=True, start="2025-03-01T00:00:00Z")


def test_a_start_that_is_no_date_fails_naming_the_param():
    with pytest.raises(SetupError, match="param 'start' must be an ISO-8601 date-time"):
        settings(start="yesterday")


def test_the_trigger_form_refuses_a_start_that_is_no_date_time():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    params = DagBag(dag_folder=str(REPO / "dags" / f"{LEADS_DAG}.py")).dags[LEADS_DAG].params
    assert params.get_param("start").schema["format"] == "date-time"
    params.get_param("start").resolve("2025-03-01T00:00:00Z")
    with pytest.raises(ParamValidationError):
        params.get_param("end").resolve("next tuesday")


# ---- the preflight -----------------------------------------------------------------------------


def preflight(path, ping=lambda: True):
    return check_setup(
        LEADS_TRIALS_ENTITIES, open_warehouse=lambda: Warehouse.open_duckdb(str(path)), ping=ping
    )


def test_preflight_passes_a_good_setup(warehouse_path):
    report = preflight(warehouse_path)
    assert report.ok, report.summary()
    # the key, the warehouse, mogulflow's tables, three extracts, and the two optional tables (off here)
    assert len(report.checked) == 8
    assert [line for line in report.checked if "optional table" in line] == [
        "lead_attributes: not in the warehouse: attributes are off (an optional table)",
        "lead_tags: not in the warehouse: tags are off (an optional table)",
    ]


def test_preflight_lists_every_problem_at_once(warehouse_path):
    execute(warehouse_path, "ALTER TABLE leads DROP COLUMN email; ALTER TABLE leads DROP COLUMN city")
    execute(warehouse_path, "DROP TABLE plans")

    def refused() -> bool:
        raise AuthenticationError("GET /v1/ping → HTTP 401: No valid API key provided", status=401)

    report = preflight(warehouse_path, ping=refused)

    lines = [str(problem) for problem in report.problems]
    assert any("connection chartmogul_default" in line and "HTTP 401" in line for line in lines), lines
    assert any(line.startswith("table leads: column email is missing") for line in lines), lines
    assert any(line.startswith("table leads: column city is missing") for line in lines), lines
    assert any(line.startswith("table plans: does not exist") for line in lines), lines
    assert report.permanent


def test_preflight_names_a_column_whose_type_cannot_work(warehouse_path):
    execute(warehouse_path, "ALTER TABLE plans ALTER interval_count TYPE BOOLEAN USING interval_count > 0")

    [problem] = preflight(warehouse_path).problems

    assert "interval_count" in str(problem) and "integer" in str(problem)


def test_preflight_adds_a_column_an_old_table_lacks_when_it_has_a_default_or_allows_null(warehouse_path):
    preflight(warehouse_path)
    execute(warehouse_path, "ALTER TABLE mogulflow_runs DROP COLUMN details")
    execute(warehouse_path, "ALTER TABLE mogulflow_runs DROP COLUMN leads_deleted")

    assert preflight(warehouse_path).problems == ()
    assert {"details", "leads_deleted"} <= set(columns_of(warehouse_path, "mogulflow_runs"))


def test_preflight_names_a_column_mogulflow_writes_that_an_old_table_lacks(warehouse_path):
    preflight(warehouse_path)
    execute(warehouse_path, "ALTER TABLE mogulflow_runs DROP COLUMN outcome")  # NOT NULL, no default

    [problem] = preflight(warehouse_path).problems

    assert str(problem).startswith("table mogulflow_runs: column outcome is missing")


def test_preflight_command_prints_each_problem_and_exits_1(warehouse_path, keyed_sandbox):
    execute(warehouse_path, "ALTER TABLE leads DROP COLUMN email")
    environment = os.environ | {
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(
            {"conn_type": "chartmogul", "host": keyed_sandbox.url, "password": "a-mistyped-key"}
        ),
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps({"conn_type": "duckdb", "host": str(warehouse_path)}),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mogulflow"), "preflight"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBLEM  connection chartmogul_default: ChartMogul refused the API key" in result.stdout
    assert "PROBLEM  table leads: column email is missing" in result.stdout
    assert "a-mistyped-key" not in result.stdout + result.stderr


# ---- end to end under `airflow dags test` ------------------------------------------------------


def dags_test(warehouse_conn: dict, chartmogul_conn: dict, *, retries: str = "2", conf=None):
    """`airflow dags test` of the leads DAG in a fresh process, with these connections; (seconds, output).

    The process shares the suite's metadata DB (`airflow_db`), where `tries_of_last_run` reads its tries.
    """
    environment = os.environ | {
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(chartmogul_conn),
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(warehouse_conn),
        "MOGULFLOW_TASK_RETRIES": retries,  # the real default: a mistake must not wait for them
    }
    started = time.monotonic()
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "airflow"),
            "dags",
            "test",
            LEADS_DAG,
            "--conf",
            json.dumps(conf or {"full_refresh": True, "max_reject_ratio": 0.5}),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return time.monotonic() - started, result.stdout + result.stderr


def chartmogul(sandbox, key=API_KEY, conn_type="chartmogul"):
    return {"conn_type": conn_type, "host": sandbox.url, "password": key}


def duckdb_conn(path, conn_type="duckdb"):
    return {"conn_type": conn_type, "host": str(path)}


def tries_of_last_run(airflow_db) -> dict[str, int]:
    """How often each task of the leads DAG's latest run was tried (0: never ran)."""
    with closing(sqlite3.connect(airflow_db)) as connection:
        [run_id] = connection.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (LEADS_DAG,)
        ).fetchone()
        return dict(
            connection.execute(
                "SELECT task_id, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (LEADS_DAG, run_id),
            ).fetchall()
        )


def assert_failed_on_the_first_try(airflow_db, seconds: float, output: str) -> None:
    """In seconds: with the real 2 retries a minute apart, a retried mistake would wait minutes."""
    tries = tries_of_last_run(airflow_db)
    assert max(tries.values()) == 1, f"tried more than once ({seconds:.0f} s): {tries}"
    assert "up_for_retry" not in output.lower()


def assert_failed_fast_and_recorded(airflow_db, seconds, output, path, sandbox, expected: str) -> None:
    assert_failed_on_the_first_try(airflow_db, seconds, output)
    assert expected in output, output[-4000:]
    [(outcome, message)] = run_rows(path)
    assert outcome == "failed" and expected in message, message
    assert not [r for r in sandbox.requests if r.method in WRITES]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "broken_by", "expected"),
    [
        ("a-mistyped-key", None, "ChartMogul refused the API key"),
        (API_KEY, "ALTER TABLE leads DROP COLUMN email", "table leads: column email is missing"),
        (API_KEY, "ALTER TABLE trials RENAME TO trial_rows", "table trials: does not exist"),
    ],
    ids=["wrong-key", "missing-column", "unknown-table"],
)
def test_a_setup_mistake_fails_in_seconds_without_retries_and_the_next_run_is_exact(
    airflow_db, keyed_sandbox, warehouse_path, key, broken_by, expected
):
    if broken_by:
        execute(warehouse_path, broken_by)

    seconds, output = dags_test(duckdb_conn(warehouse_path), chartmogul(keyed_sandbox, key))

    assert_failed_fast_and_recorded(airflow_db, seconds, output, warehouse_path, keyed_sandbox, expected)
    assert "a-mistyped-key" not in output
    # fixed: the next run syncs everything, exactly once
    build_warehouse(warehouse_path.with_name("fixed.duckdb"))
    _, output = dags_test(duckdb_conn(warehouse_path.with_name("fixed.duckdb")), chartmogul(keyed_sandbox))
    assert "ended success_with_rejects" in output, output[-3000:]
    leads = keyed_sandbox.state.data_source_by_name("Leads")["uuid"]
    assert sorted(c["external_id"] for c in keyed_sandbox.state.customers(leads)) == ["L1", "L2", "L3", "L4"]
    assert sorted(i["external_id"] for i in keyed_sandbox.state.invoices(data_source_uuid=leads)) == [
        "T1",
        "T2",
        "T3",
    ]


@pytest.mark.slow
def test_a_connection_of_the_wrong_type_fails_in_seconds(airflow_db, keyed_sandbox, warehouse_path):
    seconds, output = dags_test(duckdb_conn(warehouse_path), chartmogul(keyed_sandbox, conn_type="http"))

    assert_failed_on_the_first_try(airflow_db, seconds, output)
    assert "connection 'chartmogul_default' has type 'http'; mogulflow needs type 'chartmogul'" in output
    [(outcome, message)] = run_rows(warehouse_path)
    assert outcome == "failed" and "has type 'http'" in message


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgres_warehouse_without_a_column_fails_in_seconds(airflow_db, keyed_sandbox, postgres_database):
    import psycopg2

    with psycopg2.connect(**postgres_database) as connection, connection.cursor() as cursor:
        cursor.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        cursor.execute("ALTER TABLE leads DROP COLUMN email")
    warehouse = postgres_connection(postgres_database)
    seconds, output = dags_test(warehouse, chartmogul(keyed_sandbox))

    assert_failed_on_the_first_try(airflow_db, seconds, output)
    assert "table leads: column email is missing" in output
    with psycopg2.connect(**postgres_database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT outcome, message FROM mogulflow_runs")
        [(outcome, message)] = cursor.fetchall()
    assert outcome == "failed" and "column email is missing" in message


@pytest.mark.slow
def test_an_unreachable_api_is_an_outage_that_ends_the_run_with_its_reason(airflow_db, warehouse_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = {"conn_type": "chartmogul", "host": f"http://127.0.0.1:{port}", "password": API_KEY}

    # The client's outage budget ends the run (a hang would run into dags_test's timeout).
    _, output = dags_test(duckdb_conn(warehouse_path), unreachable, retries="0")

    [(outcome, message)] = run_rows(warehouse_path)
    assert outcome == "failed"
    assert "task preflight did not finish" in message and "connection chartmogul_default" in message
    assert API_KEY not in output
    assert "task extract_and_validate did not finish" in message  # nothing ran after the preflight


def test_every_entity_has_a_source_table():
    assert {entity.table for entity in Entity} == {
        "leads",
        "plans",
        "trials",
        "conversions",
        "lead_attributes",
        "lead_tags",
    }


@pytest.mark.parametrize(
    "key", ["Q7", "k3yZ9w", "sk_" + "x1" * 20, "long" * 40], ids=lambda k: f"{len(k)}-chars"
)
def test_no_error_text_or_chain_shows_the_key_whatever_its_length(keyed_sandbox, key):
    import base64
    import socket
    import traceback

    from mogulflow.chartmogul.client import ChartMogulClient
    from mogulflow.chartmogul.retry import RetryPolicy

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    quick = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, max_elapsed=2.0)
    texts = []
    for url in (keyed_sandbox.url, f"http://127.0.0.1:{port}"):  # refused key, then no server at all
        with ChartMogulClient(base_url=url, api_key=key, retry=quick) as client:
            texts.append(repr(client))
            with pytest.raises(Exception) as caught:
                client.ping()
        texts.append("".join(traceback.format_exception(caught.value)))
        texts.append(describe(caught.value))
    everything = "\n".join(texts)
    assert "HTTP 401" in everything and "refused" in everything.lower()
    assert key not in everything
    assert base64.b64encode(f"{key}:".encode()).decode() not in everything
