"""chartmogul_merge_converted_leads end to end: real Airflow (`dag.test()` and `airflow dags test`),
a DuckDB warehouse file, the sandbox over HTTP, connections from `AIRFLOW_CONN_*` JSON variables.

The story: chartmogul_leads_trials syncs three leads; they convert; the billing integration creates
the first paying customer at once, the second a few seconds into the merge run, the third never.
The merge run waits for the second (deferred; under dag.test the trigger runs in line), merges two,
records the third as failed and ends failed; trial invoices imported afterwards land on the
surviving customers; a re-run merges nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from datetime import datetime

import duckdb
import pytest
from repo_paths import REPO
from test_merge import pay_after_lookups

pytestmark = pytest.mark.slow

T = datetime.fromisoformat
# dag.test() writes a run's conf into the DAG's own Param objects: every run names its window.
WINDOW_UNSET = {"full_refresh": False, "start": None, "end": None}
MERGE_DAG = "chartmogul_merge_converted_leads"
LEADS_DAG = "chartmogul_leads_trials"
API_KEY = "test-key-merge-dag"

D = T("2025-01-01 00:00")
LEADS = [
    # lead_id, company_name, email, country, state, city, zip, lead_created_at, trial_started, updated_at
    ("L1", "Acme GmbH", "ops@acme.example", "DE", None, "Berlin", None, D, T("2025-01-05 10:00"), D),
    ("L2", "Beta Ltd", "hi@beta.example", "GB", None, "London", None, None, T("2025-02-01 08:30"), D),
    ("L3", "Gamma Inc", None, "US", "CA", "Oakland", None, None, None, D),
]
PLANS = [("P1", "Pro monthly", 1, "month", D)]
# trial_id, lead_id, plan_id, subscription_id, started_at, ends_at, amount, currency, quantity, updated_at
TRIALS = [("T1", "L1", "P1", None, T("2025-01-05 10:00"), T("2025-01-19 10:00"), 0, "USD", 1, D)]
LATER_TRIAL = ("T2", "L1", "P1", "sub_2", T("2025-05-01 00:00"), T("2025-05-15 00:00"), 0, "USD", 1, D)


def conversions(stripe_ds: str) -> list[tuple]:
    return [
        ("L1", stripe_ds, "cus_now", T("2025-04-01 10:00")),
        ("L2", stripe_ds, "cus_soon", T("2025-04-01 11:00")),
        ("L3", stripe_ds, "cus_never", T("2025-04-01 12:00")),
    ]


@pytest.fixture
def warehouse_path(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
    connection.executemany("INSERT INTO leads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", LEADS)
    connection.executemany("INSERT INTO plans VALUES (?, ?, ?, ?, ?)", PLANS)
    connection.executemany("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", TRIALS)
    connection.close()
    return path


@pytest.fixture
def connections(monkeypatch, sandbox, warehouse_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        json.dumps({"conn_type": "chartmogul", "host": sandbox.url, "password": API_KEY}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "duckdb", "host": str(warehouse_path)})
    )


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    return bag.dags


@pytest.fixture
def stripe_ds(sandbox) -> str:
    return sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"]


def execute(path, sql, params=()):
    connection = duckdb.connect(str(path))
    try:
        connection.execute(sql, list(params))
    finally:
        connection.close()


def query(path, sql):
    connection = duckdb.connect(str(path), read_only=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def run_row(path, run_id):
    columns = (
        "outcome, conversions_extracted, conversions_rejected, conversions_created, conversions_unchanged, "
        "conversions_failed, details"
    )
    [row] = query(path, f"SELECT {columns} FROM mogulflow_runs WHERE run_id = '{run_id}'")
    return row


def pay_in_the_background_after_lookups(
    sandbox, billing_ds: str, billing_id: str, lookups: int
) -> threading.Thread:
    """`pay_after_lookups` from a thread of its own: here the wait runs inside Airflow, where the test
    cannot act between two lookups. The waits below leave the thread seconds to catch up."""
    catch_up = pay_after_lookups(sandbox, billing_ds, billing_id, lookups)

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not catch_up() and time.monotonic() < deadline:
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def task_states(dag_run):
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def surviving_uuid(sandbox, data_source_uuid, external_id):
    customer = sandbox.state.find_customer(data_source_uuid, external_id)
    return customer and customer["uuid"]


def settle(sandbox):
    """Let the sandbox apply the merges ChartMogul accepted (202) asynchronously."""
    time.sleep(0.6)
    sandbox.state.apply_due_work()


def test_merge_dag_waits_merges_and_records_under_dag_test(
    airflow_db, connections, sandbox, warehouse_path, dags, stripe_ds, caplog
):
    assert dags[LEADS_DAG].test(run_conf=WINDOW_UNSET | {"full_refresh": True}).state == "success"
    leads_ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    execute(warehouse_path, "DELETE FROM conversions")
    for row in conversions(stripe_ds):
        execute(warehouse_path, "INSERT INTO conversions VALUES (?, ?, ?, ?)", row)
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_now")
    conf = {"full_refresh": True, "lookup_interval_seconds": 0.5, "lookup_timeout_seconds": 8}

    billing = pay_in_the_background_after_lookups(sandbox, stripe_ds, "cus_soon", lookups=2)
    with caplog.at_level(logging.INFO):
        dag_run = dags[MERGE_DAG].test(run_conf=WINDOW_UNSET | conf)
    billing.join()

    # the paying customers: two merged, the third never appeared; the run ends failed, the others not
    assert any("running trigger in line" in r.getMessage() for r in caplog.records), "the wait did not defer"
    states = task_states(dag_run)
    assert states["wait_for_paying_customers"] == "success"
    assert states["merge_customers"] == "success"
    assert states["record_run"] == "failed"
    assert dag_run.state == "failed"
    outcome, extracted, rejected, created, unchanged, failed, details = run_row(
        warehouse_path, dag_run.run_id
    )
    assert (outcome, extracted, rejected, created, unchanged, failed) == ("failed", 3, 0, 2, 0, 1)
    assert json.loads(details)["lookup"]["polls"] >= 3  # the first in the worker, the others deferred
    settle(sandbox)
    assert surviving_uuid(sandbox, leads_ds, "L1") == surviving_uuid(sandbox, stripe_ds, "cus_now")
    assert surviving_uuid(sandbox, leads_ds, "L2") == surviving_uuid(sandbox, stripe_ds, "cus_soon")
    state = dict(
        query(
            warehouse_path, "SELECT external_id, status FROM mogulflow_sync_state WHERE entity = 'conversion'"
        )
    )
    assert state == {"L1": "merged", "L2": "merged", "L3": "failed"}

    # trial invoices imported afterwards land on the surviving customer
    execute(warehouse_path, "INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", LATER_TRIAL)
    assert dags[LEADS_DAG].test(run_conf=WINDOW_UNSET | {"full_refresh": True}).state == "success"
    invoices = {i["external_id"]: i for i in sandbox.state.invoices(data_source_uuid=leads_ds)}
    assert invoices["T2"]["customer_uuid"] == surviving_uuid(sandbox, stripe_ds, "cus_now")

    # a re-run merges nothing twice and still waits for (and fails on) the missing one only
    merges_before = len(sandbox.state.merges())
    rerun = dags[MERGE_DAG].test(run_conf=WINDOW_UNSET | conf | {"lookup_timeout_seconds": 1})
    assert len(sandbox.state.merges()) == merges_before
    outcome, extracted, rejected, created, unchanged, failed, _ = run_row(warehouse_path, rerun.run_id)
    assert (outcome, extracted, created, unchanged, failed) == ("failed", 3, 0, 2, 1)


def test_merge_dag_succeeds_when_every_paying_customer_exists(
    airflow_db, connections, sandbox, warehouse_path, dags, stripe_ds
):
    assert dags[LEADS_DAG].test(run_conf=WINDOW_UNSET | {"full_refresh": True}).state == "success"
    for lead_id, billing_id in (("L1", "cus_a"), ("L2", "cus_b")):
        sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id=billing_id)
        execute(
            warehouse_path,
            "INSERT INTO conversions VALUES (?, ?, ?, ?)",
            (lead_id, stripe_ds, billing_id, T("2025-04-01")),
        )
    execute(
        warehouse_path, "INSERT INTO conversions VALUES ('L_unknown', ?, 'cus_x', '2025-04-01')", (stripe_ds,)
    )

    dag_run = dags[MERGE_DAG].test(
        run_conf=WINDOW_UNSET | {"start": "2025-04-01T00:00:00Z", "end": "2025-04-02T00:00:00Z"}
    )

    assert dag_run.state == "success"
    outcome, extracted, rejected, created, unchanged, failed, _ = run_row(warehouse_path, dag_run.run_id)
    assert (outcome, extracted, rejected, created, unchanged, failed) == (
        "success_with_rejects",
        3,
        1,
        2,
        0,
        0,
    )
    [(reason,)] = query(warehouse_path, "SELECT reason FROM mogulflow_rejects WHERE source_id = 'L_unknown'")
    assert "lead_id" in reason


def test_merge_dag_runs_under_airflow_dags_test_with_conf(
    airflow_db, connections, sandbox, warehouse_path, dags, stripe_ds
):
    assert dags[LEADS_DAG].test(run_conf=WINDOW_UNSET | {"full_refresh": True}).state == "success"
    leads_ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    execute(
        warehouse_path,
        "INSERT INTO conversions VALUES ('L1', ?, 'cus_cli', '2025-04-01 10:00')",
        (stripe_ds,),
    )
    conf = {"full_refresh": True, "lookup_interval_seconds": 1, "lookup_timeout_seconds": 60}
    # the paying customer appears while the CLI's run is waiting for it
    billing = pay_in_the_background_after_lookups(sandbox, stripe_ds, "cus_cli", lookups=2)
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "airflow"), "dags", "test", MERGE_DAG, "--conf", json.dumps(conf)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    billing.join()

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "running trigger in line" in output
    settle(sandbox)
    assert surviving_uuid(sandbox, leads_ds, "L1") == surviving_uuid(sandbox, stripe_ds, "cus_cli")
    [(outcome, created)] = query(
        warehouse_path,
        f"SELECT outcome, conversions_created FROM mogulflow_runs WHERE dag_id = '{MERGE_DAG}'",
    )
    assert (outcome, created) == ("success", 1)
