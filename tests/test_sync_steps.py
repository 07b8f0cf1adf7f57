"""The Airflow-free steps of chartmogul_leads_trials against the sandbox over real HTTP.

Bulk JSON imports above the threshold, first contact with a data source that already holds
customers, and PATCHes that carry only what changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.data_sources import ensure_data_source
from mogulflow.load import bulk as load_bulk
from mogulflow.load.entity_step import StepInputs
from mogulflow.record.rejects import write_rejects
from mogulflow.sync import leads_trials as sync
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import resolve_settings
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse.connection import Warehouse
from mogulflow_sandbox import SandboxServer

WRITES = ("POST", "PATCH", "PUT", "DELETE")


@pytest.fixture
def sandbox():
    with SandboxServer(port=0, json_import_delay_seconds=0.05) as server:
        yield server


@pytest.fixture
def client(sandbox):
    with ChartMogulClient(base_url=sandbox.url, api_key="test-key-abcdef", requests_per_second=500) as api:
        yield api


def run_sync(warehouse_path, client, run_id: str, **params) -> dict[str, LoadReport]:
    """One run of the DAG's steps, in order, as the tasks call them; returns the load reports."""
    settings = resolve_settings(
        {"full_refresh": True, "max_reject_ratio": 0.5, **params},
        run_id=run_id,
        dag_id="chartmogul_leads_trials",
        data_interval_start=None,
        data_interval_end=None,
        started_at=datetime.now(UTC),
    )
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    try:
        ds = ensure_data_source(client, settings.data_source_name, dry_run=settings.dry_run)
        report = sync.extract_and_validate(warehouse, settings, ds)
        write_rejects(warehouse, settings, report, ds)
        inputs = StepInputs(warehouse, client, settings, ds, report)
        return {
            step: sync.load_entity(inputs, entity)
            for step, entity in (
                ("upsert_plans", Entity.PLAN),
                ("upsert_customers", Entity.LEAD),
                ("import_trial_invoices", Entity.TRIAL),
            )
        }
    finally:
        warehouse.close()


def writes(sandbox, since: int = 0) -> list:
    return [r for r in sandbox.requests[since:] if r.method in WRITES]


def execute(path, sql: str) -> None:
    connection = duckdb.connect(str(path))
    connection.execute(sql)
    connection.close()


def leads_ds(sandbox) -> str:
    return sandbox.state.data_source_by_name("Leads")["uuid"]


def test_many_new_objects_go_through_json_imports(monkeypatch, sandbox, client, warehouse_path):
    monkeypatch.setenv(load_bulk.BULK_THRESHOLD_ENV, "2")
    monkeypatch.setattr(load_bulk, "BULK_POLL_SECONDS", 0.05)

    reports = run_sync(warehouse_path, client, "bulk-1")

    assert reports["upsert_customers"].created == 4
    assert reports["import_trial_invoices"].created == 3
    ds = leads_ds(sandbox)
    assert {c["external_id"] for c in sandbox.state.customers(ds)} == {"L1", "L2", "L3", "L4"}
    assert {i["external_id"] for i in sandbox.state.invoices(data_source_uuid=ds)} == {"T1", "T2", "T3"}
    posted = {r.path for r in writes(sandbox) if r.method == "POST"}
    assert f"/v1/data_sources/{ds}/json_imports" in posted
    assert "/v1/customers" not in posted
    assert not any(path.startswith("/v1/import/customers/") for path in posted)


def test_bulk_imported_objects_are_left_alone_by_the_next_run(monkeypatch, sandbox, client, warehouse_path):
    monkeypatch.setenv(load_bulk.BULK_THRESHOLD_ENV, "2")
    monkeypatch.setattr(load_bulk, "BULK_POLL_SECONDS", 0.05)
    run_sync(warehouse_path, client, "bulk-1")
    seen = len(sandbox.requests)

    reports = run_sync(warehouse_path, client, "bulk-2")

    assert writes(sandbox, seen) == []
    assert (reports["upsert_customers"].unchanged, reports["import_trial_invoices"].unchanged) == (4, 3)


def test_first_contact_with_a_filled_data_source_compares_not_creates(sandbox, client, warehouse_path):
    run_sync(warehouse_path, client, "first")
    execute(warehouse_path, "DELETE FROM mogulflow_sync_state WHERE entity = 'lead'")  # a lost state table
    seen = len(sandbox.requests)

    reports = run_sync(warehouse_path, client, "second")

    assert reports["upsert_customers"].unchanged == 4
    assert [r for r in writes(sandbox, seen) if "/customers" in r.path] == []
    listing = [r for r in sandbox.requests[seen:] if r.method == "GET" and r.path == "/v1/customers"]
    assert len(listing) == 1  # one page of 200 lists the whole data source; no lookups one by one


def test_a_changed_lead_is_patched_once_with_only_the_changed_fields(sandbox, client, warehouse_path):
    run_sync(warehouse_path, client, "first")
    execute(
        warehouse_path,
        "UPDATE leads SET email = 'new@acme.example', updated_at = TIMESTAMP '2025-04-01 00:00:00' "
        "WHERE lead_id = 'L1' AND company_name = 'Acme GmbH'",
    )
    seen = len(sandbox.requests)

    reports = run_sync(warehouse_path, client, "second")

    [patch] = writes(sandbox, seen)
    customer = sandbox.state.find_customer(leads_ds(sandbox), "L1")
    assert (patch.method, patch.path) == ("PATCH", f"/v1/customers/{customer['uuid']}")
    assert customer["email"] == "new@acme.example"
    assert reports["upsert_customers"].updated == 1
    assert reports["upsert_customers"].unchanged == 3


def test_changed_fields_are_the_only_ones_planned():
    from mogulflow.values.field_equality import changed_fields

    before = {"name": "Acme", "email": "a@acme.example", "city": None}
    after = {"name": "Acme", "email": "b@acme.example", "city": None}
    assert changed_fields(before, after) == {"email": "b@acme.example"}
