"""Both DAGs on a real CeleryExecutor cluster whose workers share no local disk.

One cluster (tests/cluster.py) serves both tests: an api-server, a scheduler, a dag-processor, a
triggerer and two Celery workers, each worker in its own mount namespace with a private tmpfs over
/tmp and the old local staging root. The warehouse is a throwaway PostgreSQL database holding the
sample data; ChartMogul is the sandbox, served over HTTP from this process. Runs are triggered
through the REST API with a token. The sandbox must then hold exactly what the sample's valid rows
make: every hand-off between tasks went through a place every worker reaches.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from airflow_setup import postgres_connection
from cluster import WORKERS, Cluster, PrivateDisksUnavailable, load_sample_warehouse, throwaway_database
from repo_paths import REPO

from mogulflow.values.entities import Entity

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]

LEADS_DAG = "chartmogul_leads_trials"
MERGE_DAG = "chartmogul_merge_converted_leads"
API_KEY = "test-key-cluster"
SAMPLE_LEADS = 2000
# The task that stages what it extracted (pinned to w1), and the tasks that read it (record_run removes it).
STAGING_TASK = "extract_and_validate"
READERS_OF_STAGING = (
    "record_rejects",
    "upsert_plans",
    "upsert_customers",
    "import_trial_invoices",
    "record_run",
)
LOST_WORKER_SOURCE = "Leads (worker lost)"
# The task whose worker dies in the second test: it writes to ChartMogul and runs for seconds.
TASK_OF_LOST_WORKER = "upsert_customers"


@dataclass(frozen=True)
class Expected:
    """What a full sync of the sample must leave in ChartMogul: one object per valid row."""

    customers: int
    plans: int
    invoices: int
    merges: int


@dataclass
class Setup:
    cluster: Cluster
    sandbox: Any
    warehouse: dict[str, Any]
    expected: Expected


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest, postgres_server: dict) -> Iterator[Setup]:
    from mogulflow_sandbox import SandboxServer

    failed_before = request.session.testsfailed

    timings: dict[str, float] = {}
    with SandboxServer(port=0, api_key=API_KEY) as sandbox, throwaway_database("mogulflow_cluster_wh") as dsn:
        billing = {
            "ds_billing_stripe": sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"],
            "ds_billing_chargebee": sandbox.state.create_data_source("Chargebee", system="Chargebee")["uuid"],
        }
        stats, frames = load_sample_warehouse(dsn, billing, leads=SAMPLE_LEADS)
        paying = frames["conversions"][["billing_data_source_uuid", "billing_customer_external_id"]].dropna()
        for ds, external_id in set(paying.itertuples(index=False, name=None)):
            # The integrations created every paying customer already (broken rows name none).
            if ds in billing.values() and external_id.strip():
                sandbox.state.create_customer(data_source_uuid=ds, external_id=external_id)
        expected = Expected(
            customers=stats.rows["leads"] - stats.rejected[Entity.LEAD],
            plans=stats.rows["plans"] - stats.rejected[Entity.PLAN],
            invoices=stats.rows["trials"] - stats.rejected[Entity.TRIAL],
            merges=stats.rows["conversions"] - stats.rejected[Entity.CONVERSION],
        )
        connections = {
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(
                {
                    "conn_type": "chartmogul",
                    "host": sandbox.url,
                    "password": API_KEY,
                    "extra": {"requests_per_second": 100},
                }
            ),
            "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(postgres_connection(dsn)),
        }
        # The pid too: two test runs side by side may start their clusters in the same second.
        scratch = REPO / "var" / f"cluster-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        # One retry per task: the second test loses a worker mid-task (the first asserts no task needed it).
        cluster = Cluster(
            scratch,
            connections,
            extra_env={"MOGULFLOW_TASK_RETRIES": "1"},
            pinned={STAGING_TASK: WORKERS[0]},
        )
        try:
            try:
                cluster.start()
            except PrivateDisksUnavailable as error:
                pytest.fail(str(error), pytrace=False)  # a failure, not a skip: CI must not pass without it
            cluster.create_pool("chartmogul_api", 1)
            yield Setup(cluster, sandbox, dsn, expected)
        finally:
            cluster.stop()
            timings.update(cluster.timings)
            print(f"\ncluster timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
        leftovers = cluster.leftover_pids()
    assert not leftovers, f"processes left behind: {sorted(leftovers)}"
    if request.session.testsfailed == failed_before:
        shutil.rmtree(scratch)  # the components' logs are kept only when a test failed


def run_to_end(cluster: Cluster, dag_id: str, conf: dict[str, Any]) -> tuple[str, str, float]:
    started = time.monotonic()
    run_id = cluster.trigger(dag_id, conf)
    state = cluster.wait_for_run(dag_id, run_id)
    return run_id, state, time.monotonic() - started


def ran_on(cluster: Cluster, dag_id: str, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["hostname"] for ti in cluster.task_instances(dag_id, run_id) if ti["hostname"]}


def failed_task_logs(cluster: Cluster, dag_id: str, run_id: str) -> str:
    lines = []
    for ti in cluster.task_instances(dag_id, run_id):
        if ti["state"] != "success":
            lines.append(f"=== {ti['task_id']} {ti['state']} on {ti['hostname']} ===")
            lines.append(cluster.task_log(dag_id, run_id, ti["task_id"], max(1, ti["try_number"]))[-3000:])
    return "\n".join(lines)


def synced(sandbox: Any, data_source_name: str) -> Expected:
    """What the sandbox holds in a data source; each count refuses duplicate external ids."""
    ds = sandbox.state.data_source_by_name(data_source_name)["uuid"]

    def distinct(objects: list[dict]) -> int:
        ids = [o["external_id"] for o in objects]
        assert len(ids) == len(set(ids)), "an object was created twice"
        return len(ids)

    return Expected(
        customers=distinct(sandbox.state.customers(ds)),
        plans=distinct(sandbox.state.plans(ds)),
        invoices=distinct(sandbox.state.invoices(data_source_uuid=ds)),
        merges=len(sandbox.state.merges()),
    )


def run_row(dsn: dict, run_id: str) -> dict[str, Any]:
    with psycopg.connect(**dsn) as connection:
        cursor = connection.execute("SELECT * FROM mogulflow_runs WHERE run_id = %s", (run_id,))
        [row] = cursor.fetchall()
        return dict(zip([d.name for d in cursor.description], row, strict=True))


def staged_parts(dsn: dict) -> int:
    with psycopg.connect(**dsn) as connection:
        return connection.execute("SELECT count(*) FROM mogulflow_staging").fetchone()[0]


def test_both_dags_sync_exactly_on_two_workers_that_share_no_local_disk(setup: Setup) -> None:
    cluster, sandbox, expected = setup.cluster, setup.sandbox, setup.expected

    # Celery would spread the tasks over both workers at random: the extract is pinned to w1 (a
    # queue of its own) and w2 alone takes the rest, so every task reading what the extract staged
    # runs on w2, which cannot see w1's disk.
    started = time.monotonic()
    cluster.only("w2")
    try:
        run_id = cluster.trigger(LEADS_DAG, {"full_refresh": True})
        state = cluster.wait_for_run(LEADS_DAG, run_id)
    finally:
        cluster.only(*WORKERS)
    assert state == "success", failed_task_logs(cluster, LEADS_DAG, run_id)
    hosts = ran_on(cluster, LEADS_DAG, run_id)
    print(f"\n{LEADS_DAG}: {time.monotonic() - started:.1f} s, tasks on {hosts}")
    assert hosts[STAGING_TASK] == "w1"
    assert {hosts[task] for task in READERS_OF_STAGING} == {"w2"}
    assert all(ti["try_number"] == 1 for ti in cluster.task_instances(LEADS_DAG, run_id))
    assert synced(sandbox, "Leads") == Expected(expected.customers, expected.plans, expected.invoices, 0)
    row = run_row(setup.warehouse, run_id)
    assert (row["outcome"], row["leads_created"], row["plans_created"], row["trials_created"]) == (
        "success_with_rejects",
        expected.customers,
        expected.plans,
        expected.invoices,
    )
    assert staged_parts(setup.warehouse) == 0  # removed once the run was recorded

    merge_conf = {"full_refresh": True, "lookup_interval_seconds": 2, "lookup_timeout_seconds": 60}
    merge_run, state, took = run_to_end(cluster, MERGE_DAG, merge_conf)
    assert state == "success", failed_task_logs(cluster, MERGE_DAG, merge_run)
    print(f"{MERGE_DAG}: {took:.1f} s, tasks on {ran_on(cluster, MERGE_DAG, merge_run)}")
    assert set(ran_on(cluster, MERGE_DAG, merge_run).values()) <= set(WORKERS)
    assert len(sandbox.state.merges()) == expected.merges
    row = run_row(setup.warehouse, merge_run)
    assert (row["conversions_created"], row["conversions_failed"]) == (expected.merges, 0)
    assert staged_parts(setup.warehouse) == 0


def test_a_run_whose_worker_dies_mid_task_still_ends_exact(setup: Setup) -> None:
    cluster, sandbox, expected = setup.cluster, setup.sandbox, setup.expected
    merges_before = len(sandbox.state.merges())
    started = time.monotonic()
    run_id = cluster.trigger(LEADS_DAG, {"full_refresh": True, "data_source_name": LOST_WORKER_SOURCE})

    lost = None
    deadline = time.monotonic() + 600
    while lost is None:
        for ti in cluster.task_instances(LEADS_DAG, run_id):
            if (
                ti["task_id"] == TASK_OF_LOST_WORKER
                and ti["state"] == "running"
                and ti["hostname"] in WORKERS
            ):
                lost = ti["hostname"]
        assert cluster.run_state(LEADS_DAG, run_id) in ("queued", "running"), (
            f"{TASK_OF_LOST_WORKER} never seen running"
        )
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cluster.kill_worker(lost)
    killed_at = time.monotonic() - started

    state = cluster.wait_for_run(LEADS_DAG, run_id, timeout=900)
    took = time.monotonic() - started
    assert state == "success", failed_task_logs(cluster, LEADS_DAG, run_id)
    [retried] = [
        ti for ti in cluster.task_instances(LEADS_DAG, run_id) if ti["task_id"] == TASK_OF_LOST_WORKER
    ]
    print(
        f"\nworker {lost} killed {killed_at:.1f} s into the run, during {TASK_OF_LOST_WORKER}; "
        f"run ended {state} after {took:.1f} s; {TASK_OF_LOST_WORKER} try {retried['try_number']} "
        f"on {retried['hostname']}"
    )
    assert retried["try_number"] >= 2
    assert retried["hostname"] == next(w for w in WORKERS if w != lost)
    assert synced(sandbox, LOST_WORKER_SOURCE) == Expected(
        expected.customers, expected.plans, expected.invoices, merges_before
    )
    row = run_row(setup.warehouse, run_id)
    # What the lost try created before it died, the retry finds synced (unchanged), not created again.
    assert (row["leads_created"] + row["leads_unchanged"], row["leads_failed"], row["trials_failed"]) == (
        expected.customers,
        0,
        0,
    )
