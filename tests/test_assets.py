"""Assets and lineage: the loads emit asset events whose extra carries the run's counts and rejects by
rule, and the hook-lineage collector hears warehouse tables in, ChartMogul data source out.

One real `dag.test()` of `chartmogul_leads_trials` (sample warehouse, sandbox over HTTP) with a
hook-lineage reader registered, as the OpenLineage provider registers one; the events are read back
from Airflow's metadata DB.
"""

from __future__ import annotations

import json

import pytest
from airflow_setup import FULL_REFRESH_CONF
from repo_paths import REPO

pytestmark = pytest.mark.slow

CONF = FULL_REFRESH_CONF


@pytest.fixture(scope="module")
def synced(airflow_db, tmp_path_factory):
    """One full-refresh run with a hook-lineage reader registered: dag_run, collector, warehouse, sandbox."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import lineage, plugins_manager
    from sample_rows import build_warehouse

    from mogulflow_sandbox import SandboxServer

    warehouse = tmp_path_factory.mktemp("assets") / "warehouse.duckdb"
    build_warehouse(warehouse)
    with SandboxServer(port=0) as sandbox, pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
            json.dumps({"conn_type": "chartmogul", "host": sandbox.url, "password": "test-key-abcdef"}),
        )
        patch.setenv(
            "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "duckdb", "host": str(warehouse)})
        )
        patch.delenv("AIRFLOW_CONN_MOGULFLOW_SLACK", raising=False)
        # What a plugin with `hook_lineage_readers` (e.g. the OpenLineage provider) does: Airflow then
        # hands out a collecting HookLineageCollector instead of its no-op one.
        patch.setattr(
            plugins_manager, "get_hook_lineage_readers_plugins", lambda: [lineage.HookLineageReader]
        )
        lineage.get_hook_lineage_collector.cache_clear()
        try:
            dag = DagBag(dag_folder=str(REPO / "dags" / "chartmogul_leads_trials.py")).dags[
                "chartmogul_leads_trials"
            ]
            dag_run = dag.test(run_conf=CONF)
            collector = lineage.get_hook_lineage_collector()
            yield dag_run, collector, warehouse, sandbox
        finally:
            lineage.get_hook_lineage_collector.cache_clear()


def asset_events(run_id: str) -> dict[str, tuple[str, str, dict]]:
    """The run's asset events by asset name: (uri, source task, extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (
        select(AssetModel.name, AssetModel.uri, AssetEvent.source_task_id, AssetEvent.extra)
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .where(AssetEvent.source_run_id == run_id)
    )
    with create_session() as session:
        return {name: (uri, task_id, extra) for name, uri, task_id, extra in session.execute(query)}


def test_the_loads_emit_one_event_each_for_customers_and_trial_invoices(synced):
    dag_run, _, _, _ = synced
    assert dag_run.state == "success"

    events = asset_events(dag_run.run_id)

    assert {name: (uri, task) for name, (uri, task, _) in events.items()} == {
        "chartmogul_customers": ("chartmogul://chartmogul_default/customers", "upsert_customers"),
        "chartmogul_trial_invoices": (
            "chartmogul://chartmogul_default/trial_invoices",
            "import_trial_invoices",
        ),
    }


def test_the_customers_event_carries_the_run_counts_and_rejects_by_rule(synced):
    dag_run, _, _, sandbox = synced
    _, _, extra = asset_events(dag_run.run_id)["chartmogul_customers"]

    assert extra["run_id"] == dag_run.run_id
    assert extra["data_source_name"] == "Leads"
    assert extra["data_source_uuid"] == sandbox.state.data_source_by_name("Leads")["uuid"]
    assert extra["full_refresh"] is True and extra["dry_run"] is False
    counts = {k: extra[k] for k in ("extracted", "rejected", "created", "updated", "unchanged", "failed")}
    assert counts == {"extracted": 6, "rejected": 2, "created": 4, "updated": 0, "unchanged": 0, "failed": 0}
    assert extra["rejects_by_rule"] == {
        "duplicate lead_id: a row with a later updated_at wins": 1,
        "email: must be a valid email address": 1,
    }


def test_the_trial_invoices_event_agrees_with_mogulflow_runs(synced):
    import duckdb

    dag_run, _, warehouse, _ = synced
    _, _, extra = asset_events(dag_run.run_id)["chartmogul_trial_invoices"]
    connection = duckdb.connect(str(warehouse), read_only=True)
    try:
        row = connection.execute(
            "SELECT trials_extracted, trials_rejected, trials_created, trials_failed FROM mogulflow_runs "
            "WHERE run_id = ?",
            [dag_run.run_id],
        ).fetchone()
    finally:
        connection.close()

    assert (extra["extracted"], extra["rejected"], extra["created"], extra["failed"]) == row
    assert sum(extra["rejects_by_rule"].values()) == extra["rejected"]


def test_extract_reports_the_source_tables_as_lineage_inputs(synced):
    _, collector, warehouse, _ = synced

    inputs = {info.asset.uri for info in collector.collected_assets.inputs}

    assert inputs == {
        f"duckdb://localhost/{str(warehouse).lstrip('/')}/main/{t}" for t in ("leads", "plans", "trials")
    }


def test_the_loads_report_the_chartmogul_data_source_as_lineage_output(synced):
    _, collector, _, sandbox = synced
    uuid = sandbox.state.data_source_by_name("Leads")["uuid"]
    host = sandbox.url.split("://", 1)[1].rstrip("/")

    outputs = collector.collected_assets.outputs

    assert {info.asset.uri for info in outputs} == {f"chartmogul://{host}/data_sources/{uuid}"}
    assert {type(info.context).__name__ for info in outputs} == {"ChartMogulHook"}


def test_the_merge_dag_declares_the_customer_merges_asset():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "chartmogul_merge_converted_leads.py")).dags[
        "chartmogul_merge_converted_leads"
    ]

    [asset] = dag.get_task("merge_customers").outlets
    assert (asset.name, asset.uri) == (
        "chartmogul_customer_merges",
        "chartmogul://chartmogul_default/customer_merges",
    )
