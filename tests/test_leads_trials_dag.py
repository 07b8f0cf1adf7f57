"""chartmogul_leads_trials end to end: a DuckDB warehouse, the sandbox over real HTTP, real Airflow.

The warehouse holds the small, hand-written rows of `sample_rows`, whose expected outcome is spelled
out here, so each assertion reads as the contract's mapping and validation rules.
"""

from __future__ import annotations

import duckdb
import pytest
from repo_paths import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def leads_trials_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / "chartmogul_leads_trials.py")).dags[
        "chartmogul_leads_trials"
    ]


# dag.test() writes a run's conf into the DAG's own Param objects, so every run names every param.
DEFAULT_CONF = {
    "full_refresh": False,
    "start": None,
    "end": None,
    "dry_run": False,
    "data_source_name": "Leads",
    "max_reject_ratio": 0.5,
    "min_rejects_to_fail": 2,
}


def run_dag(dag, **conf):
    return dag.test(run_conf={**DEFAULT_CONF, **conf})


def query(path, sql):
    connection = duckdb.connect(str(path), read_only=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def leads_source(sandbox):
    source = sandbox.state.data_source_by_name("Leads")
    assert source is not None, "the Leads data source was not created"
    return source["uuid"]


def test_full_refresh_creates_expected_customers_plans_and_trial_invoices(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    dag_run = run_dag(leads_trials_dag, full_refresh=True)
    assert dag_run.state == "success"

    ds = leads_source(sandbox)
    customers = {c["external_id"]: c for c in sandbox.state.customers(ds)}
    assert set(customers) == {"L1", "L2", "L3", "L4"}
    assert customers["L1"]["name"] == "Acme GmbH"
    assert customers["L1"]["country"] == "DE"
    assert customers["L1"]["lead_created_at"].startswith("2025-01-02T09:00:00")
    # the default rule: the trial date when the lead has none, from free_trial_started_at ...
    assert customers["L2"]["lead_created_at"].startswith("2025-02-01T08:30:00")
    # ... or else from the earliest valid trial
    assert customers["L3"]["lead_created_at"].startswith("2025-03-03T12:00:00")
    assert customers["L4"]["lead_created_at"] is None

    plans = {p["external_id"]: p for p in sandbox.state.plans(ds)}
    assert set(plans) == {"P1", "P2"}

    invoices = {i["external_id"]: i for i in sandbox.state.invoices(data_source_uuid=ds)}
    assert set(invoices) == {"T1", "T2", "T3"}
    t2 = invoices["T2"]
    assert t2["currency"] == "EUR"
    [line] = t2["line_items"]
    assert line["type"] == "trial"
    assert line["amount_in_cents"] == 1500
    assert line["quantity"] == 2
    assert line["plan_uuid"] == plans["P2"]["uuid"]
    assert line["subscription_external_id"] == "sub_2"
    assert invoices["T1"]["line_items"][0]["subscription_external_id"] == "T1"
    assert invoices["T1"]["customer_uuid"] == customers["L1"]["uuid"]


def test_every_bad_row_is_recorded_with_its_reason(airflow_db, connections, warehouse_path, leads_trials_dag):
    dag_run = run_dag(leads_trials_dag, full_refresh=True)
    rejects = query(warehouse_path, "SELECT entity, source_id, reason FROM mogulflow_rejects ORDER BY 1, 2")
    by_key = {(entity, source_id): reason for entity, source_id, reason in rejects}
    assert set(by_key) == {("lead", "L1"), ("lead", "L5"), ("plan", "P3"), ("trial", "T4"), ("trial", "T5")}
    assert "duplicate" in by_key[("lead", "L1")]
    assert "email" in by_key[("lead", "L5")] and "not-an-email" in by_key[("lead", "L5")]
    assert "interval_unit" in by_key[("plan", "P3")] and "week" in by_key[("plan", "P3")]
    assert "lead_id" in by_key[("trial", "T4")]
    assert "plan_id" in by_key[("trial", "T5")]
    [run_id] = {row[0] for row in query(warehouse_path, "SELECT run_id FROM mogulflow_rejects")}
    assert run_id == dag_run.run_id


def test_run_account_adds_up_per_entity(airflow_db, connections, warehouse_path, leads_trials_dag):
    run_dag(leads_trials_dag, full_refresh=True)
    [row] = query(
        warehouse_path,
        "SELECT outcome, leads_extracted, leads_rejected, leads_created, plans_extracted, plans_rejected, "
        "plans_created, trials_extracted, trials_rejected, trials_created FROM mogulflow_runs",
    )
    assert row == ("success_with_rejects", 6, 2, 4, 3, 1, 2, 5, 2, 3)


def test_second_run_over_unchanged_warehouse_writes_nothing(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    run_dag(leads_trials_dag, full_refresh=True)
    writes_before = [r for r in sandbox.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    dag_run = run_dag(leads_trials_dag, full_refresh=True)
    assert dag_run.state == "success"
    writes_after = [r for r in sandbox.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes_after == writes_before
    ds = leads_source(sandbox)
    assert len(sandbox.state.customers(ds)) == 4
    assert len(sandbox.state.invoices(data_source_uuid=ds)) == 3
    unchanged = query(
        warehouse_path,
        "SELECT leads_unchanged, plans_unchanged, trials_unchanged FROM mogulflow_runs "
        f"WHERE run_id = '{dag_run.run_id}'",
    )
    assert unchanged == [(4, 2, 3)]


def test_reject_ratio_above_the_limit_fails_the_run_before_loading_that_entity(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    # min_rejects_to_fail 1: the ratio alone decides, as for any entity with at least the floor's rejects
    dag_run = run_dag(leads_trials_dag, full_refresh=True, max_reject_ratio=0.3, min_rejects_to_fail=1)
    assert dag_run.state == "failed"
    ds = leads_source(sandbox)
    # leads 2 of 6, plans 1 of 3, trials 2 of 5 rejected: all above 30%, so nothing is loaded
    assert sandbox.state.customers(ds) == []
    assert sandbox.state.plans(ds) == []
    [(outcome, message, leads_failed)] = query(
        warehouse_path, "SELECT outcome, message, leads_failed FROM mogulflow_runs"
    )
    assert outcome == "failed"
    assert "max_reject_ratio" in message
    assert leads_failed == 4  # valid but not loaded: counted, so the numbers still add up
