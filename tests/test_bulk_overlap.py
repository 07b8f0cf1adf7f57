"""Overlapped JSON imports keep every promise: all records of one customer in one import, the exact
state, nothing doubled after a kill mid-load, failed records retried by the next run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from builders import plan
from direct_sync import duplicated, query, run_sync_directly, sandbox_client, synced_account
from test_sync_engine import varied_leads_with_trials, write_warehouse

from mogulflow.load import bulk as load_bulk
from mogulflow.load.bulk import CustomerRecords, import_batches
from mogulflow.plan.sync_plan import PlannedCreate
from mogulflow.transform.payloads import CustomerPayload, TrialInvoice
from mogulflow.values.entities import Entity
from mogulflow_sandbox import SandboxServer
from mogulflow_sandbox.api_errors import field_errors
from mogulflow_sandbox.state import SandboxState

LEADS = 60


class Killed(BaseException):
    """Stands in for kill -9: nothing after it runs, not even `except Exception` handlers."""


@pytest.fixture
def small_imports(monkeypatch):
    """Imports of 7 customers (the first of 3), polled quickly, bulk from the first create on."""
    monkeypatch.setenv("MOGULFLOW_BULK_THRESHOLD", "1")
    monkeypatch.setattr(load_bulk, "BULK_CUSTOMERS_PER_IMPORT", 7)
    monkeypatch.setattr(load_bulk, "BULK_FIRST_IMPORT_CUSTOMERS", 3)
    monkeypatch.setattr(load_bulk, "BULK_POLL_SECONDS", 0.02)


def _warehouse(path):
    leads, trials = varied_leads_with_trials(LEADS)
    write_warehouse(
        path, leads=leads, plans=[plan(f"P{k}", name=f"Plan {k}") for k in range(3)], trials=trials
    )
    return len(trials)


def _reference(tmp_path, monkeypatch):
    """What the per-object path makes of the same warehouse."""
    path = tmp_path / "reference.duckdb"
    _warehouse(path)
    with monkeypatch.context() as patched:
        patched.setenv("MOGULFLOW_BULK_THRESHOLD", "0")
        with SandboxServer(port=0) as sandbox, sandbox_client(sandbox.url) as client:
            run_sync_directly(path, client, run_id="reference", full_refresh=True)
            return synced_account(sandbox.state)


def _state(path, entity: str) -> dict[str, tuple]:
    rows = query(
        path,
        "SELECT external_id, chartmogul_uuid, status FROM mogulflow_sync_state WHERE entity = ?",
        [entity],
    )
    return {external_id: (uuid, status) for external_id, uuid, status in rows}


def _uuids(sandbox, kind: str) -> dict[str, str]:
    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    objects = (
        sandbox.state.customers(ds) if kind == "customers" else sandbox.state.invoices(data_source_uuid=ds)
    )
    return {o["external_id"]: o["uuid"] for o in objects}


def _customer(i: int) -> CustomerRecords:
    """Lead L{i} with 1-3 new trial invoices."""
    started = datetime(2025, 3, 2, tzinfo=UTC)
    invoices = tuple(
        PlannedCreate(
            TrialInvoice(
                f"T{i}-{n}", f"L{i}", "P1", f"S{i}-{n}", started, started + timedelta(days=14), 0, "USD", 1
            )
        )
        for n in range(1 + i % 3)
    )
    customer = CustomerPayload(f"L{i}", f"Company {i}", None, "US", None, None, None, started, started)
    return CustomerRecords(f"L{i}", PlannedCreate(customer), invoices)


def test_every_record_of_one_customer_travels_in_the_same_import():
    groups = [_customer(i) for i in range(25)]
    batches = list(
        import_batches(
            groups,
            data_source_uuid="ds_1",
            run_id="r",
            entity=Entity.LEAD,
            customers_per_import=10,
            first_customers=4,
            max_bytes=6_000,
        )
    )

    assert len(batches) > 3
    seen: dict[str, int] = {}
    for number, batch in enumerate(batches):
        body = batch.body
        customers = {c["external_id"] for c in body["customers"]}
        assert len(customers) <= (4 if number == 0 else 10)
        for invoice in body["invoices"]:
            assert invoice["customer_external_id"] in customers
            seen[invoice["external_id"]] = number
        for line in body["line_items"]:
            assert seen[line["invoice_external_id"]] == number
    assert len(seen) == sum(len(g.invoices) for g in groups)


def test_overlapped_imports_end_in_the_exact_state_with_uuids_and_a_right_account(
    tmp_path, monkeypatch, small_imports
):
    expected = _reference(tmp_path, monkeypatch)
    path = tmp_path / "warehouse.duckdb"
    trials = _warehouse(path)
    with SandboxServer(port=0) as sandbox, sandbox_client(sandbox.url) as client:
        summary = run_sync_directly(path, client, run_id="first", full_refresh=True)
        customers, invoices = _uuids(sandbox, "customers"), _uuids(sandbox, "invoices")
        imports = sum(1 for r in sandbox.requests if r.method == "POST" and r.path.endswith("/json_imports"))
        account = synced_account(sandbox.state)

    assert account == expected
    assert duplicated(account) == {"customers": [], "plans": [], "invoices": []}
    assert _state(path, "lead") == {k: (u, "synced") for k, u in customers.items()}
    assert _state(path, "trial") == {k: (u, "synced") for k, u in invoices.items()}
    assert (summary.counts[Entity.LEAD].created, summary.counts[Entity.LEAD].failed) == (LEADS, 0)
    assert (summary.counts[Entity.TRIAL].created, summary.counts[Entity.TRIAL].failed) == (trials, 0)
    assert imports > 3  # the customers went in several overlapped imports


@pytest.mark.slow
def test_a_load_killed_between_imports_ends_with_every_row_exactly_once(tmp_path, monkeypatch, small_imports):
    expected = _reference(tmp_path, monkeypatch)
    path = tmp_path / "warehouse.duckdb"
    _warehouse(path)
    confirmed = 0
    flush = load_bulk._BulkLoad.flush

    def flush_then_die(self):
        nonlocal confirmed
        flush(self)
        confirmed += 1
        if confirmed == 3:
            raise Killed

    with SandboxServer(port=0) as sandbox, sandbox_client(sandbox.url) as client:
        with monkeypatch.context() as patched:
            patched.setattr(load_bulk._BulkLoad, "flush", flush_then_die)
            with pytest.raises(Killed):
                run_sync_directly(path, client, run_id="killed", full_refresh=True)
        assert 0 < len(_state(path, "lead")) < LEADS
        run_sync_directly(path, client, run_id="again", full_refresh=True)
        customers, invoices = _uuids(sandbox, "customers"), _uuids(sandbox, "invoices")
        account = synced_account(sandbox.state)

    assert duplicated(account) == {"customers": [], "plans": [], "invoices": []}
    assert account == expected
    assert _state(path, "lead") == {k: (u, "synced") for k, u in customers.items()}
    assert _state(path, "trial") == {k: (u, "synced") for k, u in invoices.items()}


def test_a_record_refused_inside_an_import_fails_and_the_next_run_retries_it(
    tmp_path, monkeypatch, small_imports
):
    expected = _reference(tmp_path, monkeypatch)
    path = tmp_path / "warehouse.duckdb"
    trials = _warehouse(path)
    upsert = SandboxState.upsert_customer_for_import

    def refuse_l0005(self, data_source_uuid, raw):
        if raw.get("external_id") == "L0005":
            raise field_errors({"email": "is refused today"})
        return upsert(self, data_source_uuid, raw)

    with SandboxServer(port=0) as sandbox, sandbox_client(sandbox.url) as client:
        with monkeypatch.context() as patched:
            patched.setattr(SandboxState, "upsert_customer_for_import", refuse_l0005)
            first = run_sync_directly(path, client, run_id="first", full_refresh=True)
        assert _state(path, "lead")["L0005"] == (None, "failed")
        assert _state(path, "trial")["T0005-0"] == (None, "failed")
        second = run_sync_directly(path, client, run_id="second", full_refresh=True)
        account = synced_account(sandbox.state)

    assert (first.counts[Entity.LEAD].created, first.counts[Entity.LEAD].failed) == (LEADS - 1, 1)
    assert (first.counts[Entity.TRIAL].created, first.counts[Entity.TRIAL].failed) == (trials - 1, 1)
    assert (second.counts[Entity.LEAD].created, second.counts[Entity.TRIAL].created) == (1, 1)
    assert account == expected
    assert _state(path, "lead")["L0005"][1] == "synced"
