"""Reconciliation under real Airflow: `airflow dags test chartmogul_reconcile --conf ...`, and the
nightly DAG's optional last task (param `reconcile`), on DuckDB and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess

import psycopg
import pytest
from airflow_setup import FULL_REFRESH_CONF, chartmogul_connection, postgres_connection
from direct_sync import query, run_row, run_sync_directly, sandbox_client
from repo_paths import REPO
from sample_rows import build_postgres_warehouse
from test_reconcile import LENIENT, plant_drift

pytestmark = pytest.mark.slow

LEADS_DAG = "chartmogul_leads_trials"
RECONCILE_DAG = "chartmogul_reconcile"
LEADS_CONF = FULL_REFRESH_CONF


@pytest.fixture(scope="module")
def leads_trials_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / f"{LEADS_DAG}.py")).dags[LEADS_DAG]


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def test_reconcile_dag_runs_under_airflow_dags_test_and_resend_lets_the_next_sync_fix_the_drift(
    airflow_db, connections, sandbox, warehouse_path
):
    with sandbox_client(sandbox.url) as client:
        run_sync_directly(warehouse_path, client, run_id="sync_1", full_refresh=True, **LENIENT)
    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    plant_drift(sandbox, ds)

    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "airflow"),
            "dags",
            "test",
            RECONCILE_DAG,
            "--conf",
            json.dumps({"data_source_name": "Leads", "resend": True}),
        ],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    found = query(
        warehouse_path,
        "SELECT dag_id, entity, external_id, kind, field FROM mogulflow_reconciliation ORDER BY 2, 3",
    )
    assert found == [
        (RECONCILE_DAG, "lead", "L1", "different", "lead_created_at"),
        (RECONCILE_DAG, "lead", "L2", "missing", None),
        (RECONCILE_DAG, "trial", "INV_BY_HAND", "extra", None),
        (RECONCILE_DAG, "trial", "T2", "missing", None),
    ]
    [(run_id,)] = query(warehouse_path, "SELECT DISTINCT run_id FROM mogulflow_reconciliation")
    assert run_row(warehouse_path, run_id)["outcome"] == "failed"
    with sandbox_client(sandbox.url) as client:
        quiet = {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}
        run_sync_directly(warehouse_path, client, run_id="sync_2", **quiet, **LENIENT)
    assert sandbox.state.find_customer(ds, "L2") is not None
    assert sandbox.state.find_customer(ds, "L1")["lead_created_at"].startswith("2025-01-02T09:00:00")


def test_the_nightly_dag_reconciles_at_its_end_when_asked(
    airflow_db, connections, warehouse_path, leads_trials_dag
):
    dag_run = leads_trials_dag.test(run_conf={**LEADS_CONF, "reconcile": True})

    assert dag_run.state == "success"
    assert task_states(dag_run)["reconcile_with_chartmogul"] == "success"
    # the reconciliation's own account, beside the sync's, for the same Airflow run
    runs = dict(
        query(warehouse_path, "SELECT dag_id, outcome FROM mogulflow_runs WHERE run_id = ?", [dag_run.run_id])
    )
    assert runs == {LEADS_DAG: "success_with_rejects", RECONCILE_DAG: "success"}


def test_the_nightly_dag_skips_reconciliation_by_default(
    airflow_db, connections, warehouse_path, leads_trials_dag
):
    dag_run = leads_trials_dag.test(run_conf=LEADS_CONF)

    assert dag_run.state == "success"
    assert task_states(dag_run)["reconcile_with_chartmogul"] == "skipped"
    assert query(warehouse_path, f"SELECT count(*) FROM mogulflow_runs WHERE dag_id = '{RECONCILE_DAG}'") == [
        (0,)
    ]


@pytest.mark.postgres
def test_reconciliation_on_a_postgres_warehouse(
    airflow_db, monkeypatch, sandbox, postgres_database, leads_trials_dag
):
    build_postgres_warehouse(postgres_database)
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", json.dumps(chartmogul_connection(sandbox.url)))
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        json.dumps(postgres_connection(postgres_database)),
    )
    assert leads_trials_dag.test(run_conf=LEADS_CONF).state == "success"
    plant_drift(sandbox, sandbox.state.data_source_by_name("Leads")["uuid"])

    dag_run = leads_trials_dag.test(run_conf={**LEADS_CONF, "full_refresh": False, "reconcile": True})

    assert task_states(dag_run)["reconcile_with_chartmogul"] == "success"
    with psycopg.connect(**postgres_database) as connection:
        found = connection.execute(
            "SELECT entity, external_id, kind, field, warehouse_value, chartmogul_value "
            "FROM mogulflow_reconciliation WHERE run_id = %s ORDER BY 1, 2",
            (dag_run.run_id,),
        ).fetchall()
        [(outcome, leads_failed)] = connection.execute(
            "SELECT outcome, leads_failed FROM mogulflow_runs WHERE dag_id = %s", (RECONCILE_DAG,)
        ).fetchall()
    assert found == [
        ("lead", "L1", "different", "lead_created_at", "2025-01-02T09:00:00Z", "2024-12-31T00:00:00Z"),
        ("lead", "L2", "missing", None, None, None),
        ("trial", "INV_BY_HAND", "extra", None, None, None),
        ("trial", "T2", "missing", None, None, None),
    ]
    assert (outcome, leads_failed) == ("failed", 2)
