"""chartmogul_leads_trials with a PostgreSQL warehouse (the machine's server, a throwaway database)."""

from __future__ import annotations

import json

import psycopg
import pytest
from airflow_setup import postgres_connection
from repo_paths import REPO
from sample_rows import build_postgres_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def connections(monkeypatch, sandbox, postgres_database):
    build_postgres_warehouse(postgres_database)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        json.dumps({"conn_type": "chartmogul", "host": sandbox.url, "password": "test-key-abcdef"}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        json.dumps(postgres_connection(postgres_database)),
    )
    return postgres_database


@pytest.fixture(scope="module")
def leads_trials_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / "chartmogul_leads_trials.py")).dags[
        "chartmogul_leads_trials"
    ]


def test_postgres_warehouse_syncs_like_duckdb_and_records_its_account(
    airflow_db, connections, sandbox, leads_trials_dag
):
    first = leads_trials_dag.test(run_conf={"full_refresh": True, "max_reject_ratio": 0.5})
    assert first.state == "success"
    seen = len(sandbox.requests)
    second = leads_trials_dag.test(run_conf={"full_refresh": True, "max_reject_ratio": 0.5})
    assert second.state == "success"

    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    customers = {c["external_id"]: c for c in sandbox.state.customers(ds)}
    assert set(customers) == {"L1", "L2", "L3", "L4"}
    assert customers["L3"]["lead_created_at"].startswith("2025-03-03T12:00:00")
    assert {i["external_id"] for i in sandbox.state.invoices(data_source_uuid=ds)} == {"T1", "T2", "T3"}
    assert [r for r in sandbox.requests[seen:] if r.method in ("POST", "PATCH", "PUT", "DELETE")] == []
    with psycopg.connect(**connections) as connection:
        runs = connection.execute(
            "SELECT outcome, leads_extracted, leads_created, leads_unchanged FROM mogulflow_runs "
            "ORDER BY started_at"
        ).fetchall()
        rejects = connection.execute(
            "SELECT entity, source_id FROM mogulflow_rejects WHERE run_id = %s", (first.run_id,)
        ).fetchall()
    assert runs == [("success_with_rejects", 6, 4, 0), ("success_with_rejects", 6, 0, 4)]
    assert sorted(rejects) == [
        ("lead", "L1"),
        ("lead", "L5"),
        ("plan", "P3"),
        ("trial", "T4"),
        ("trial", "T5"),
    ]


def test_postgres_warehouse_syncs_attributes_and_tags(airflow_db, connections, sandbox, leads_trials_dag):
    with psycopg.connect(**connections) as connection:
        connection.execute(
            "CREATE TABLE lead_attributes "
            "(lead_id TEXT, key TEXT, type TEXT, value TEXT, updated_at TIMESTAMP)"
        )
        connection.execute(
            "CREATE TABLE lead_tags (lead_id TEXT, tag TEXT, present BOOLEAN, updated_at TIMESTAMP)"
        )
        connection.execute(
            "INSERT INTO lead_attributes VALUES ('L2', 'lead_source', 'String', 'ads', '2025-03-02 10:00'), "
            "('L2', 'seats', 'integer', '12', '2025-03-02 10:00'), "
            "('L9', 'lead_source', 'String', 'x', '2025-03-02')"
        )
        connection.execute("INSERT INTO lead_tags VALUES ('L2', 'vip', true, '2025-03-02 10:00')")

    first = leads_trials_dag.test(run_conf={"full_refresh": True, "max_reject_ratio": 0.5})
    seen = len(sandbox.requests)
    second = leads_trials_dag.test(run_conf={"full_refresh": True, "max_reject_ratio": 0.5})

    assert (first.state, second.state) == ("success", "success")
    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    l2 = next(c for c in sandbox.state.customers(ds) if c["external_id"] == "L2")
    assert l2["attributes"]["custom"] == {"lead_source": "ads", "seats": 12}
    assert l2["attributes"]["tags"] == ["vip"]
    assert [r for r in sandbox.requests[seen:] if r.method in ("POST", "PATCH", "PUT", "DELETE")] == []
    with psycopg.connect(**connections) as connection:
        runs = connection.execute(
            "SELECT attributes_extracted, attributes_created, attributes_rejected, attributes_unchanged, "
            "tags_created, tags_unchanged FROM mogulflow_runs ORDER BY started_at"
        ).fetchall()
    assert runs == [(3, 2, 1, 0, 1, 0), (3, 0, 1, 2, 0, 1)]
