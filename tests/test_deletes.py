"""Deletes, step by step against the sandbox over HTTP: mirror what left the warehouse, never what
mogulflow did not create, the guard, erasure, lost answers.

The steps run as the DAG runs them (`direct_sync`), without Airflow; the DAG-level tests (the guard
answered through Airflow's HITL API, a kill -9 mid-delete) are in `test_deletes_dag.py`.
"""

from __future__ import annotations

import re
from datetime import datetime

import duckdb
import pytest
from direct_sync import run_sync_account, sandbox_client

from mogulflow.deletes.plan import plan_deletes
from mogulflow.sync import leads_trials
from mogulflow.values.deletions import ApprovalDecision, erased_id
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import resolve_settings
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.dialects import ColumnKind, declared_tables
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.sql_files import read_sql
from mogulflow.warehouse.sync_state import load_state
from mogulflow_sandbox import Faults

MIRROR = {"full_refresh": True, "mirror_deletes": True, "max_reject_ratio": 0.5}
APPROVED = {**MIRROR, "approve_deletes": True}


@pytest.fixture
def client(sandbox):
    with sandbox_client(sandbox.url) as client:
        yield client


def sql(path, statement, *params):
    connection = duckdb.connect(str(path))
    try:
        result = connection.execute(statement, params or None)
        return result.fetchall() if result.description else None
    finally:
        connection.close()


def synced(sandbox):
    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    customers = {c["external_id"] for c in sandbox.state.customers(ds)}
    invoices = {i["external_id"] for i in sandbox.state.invoices(data_source_uuid=ds)}
    return ds, customers, invoices


def first_sync(warehouse_path, client, sandbox):
    account = run_sync_account(warehouse_path, client, run_id="night-1", **MIRROR)
    assert account.summary.outcome == "success_with_rejects", account.summary.message
    _, customers, invoices = synced(sandbox)
    assert customers == {"L1", "L2", "L3", "L4"} and invoices == {"T1", "T2", "T3"}
    return account


def deletions(path):
    return sql(
        path, "SELECT entity, external_id, reason FROM mogulflow_deletions ORDER BY entity, external_id"
    )


def test_mirror_deletes_exactly_the_gone_leads_and_trials_with_their_invoices(
    warehouse_path, client, sandbox
):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id = 'L2'")  # T2 stays in trials: it names L2
    sql(warehouse_path, "DELETE FROM trials WHERE trial_id = 'T3'")  # L3 stays

    account = run_sync_account(warehouse_path, client, run_id="night-2", **APPROVED)

    _, customers, invoices = synced(sandbox)
    assert customers == {"L1", "L3", "L4"}
    assert invoices == {"T1"}  # T2 went with its customer, T3 on its own
    counts = account.summary.counts
    assert (counts[Entity.LEAD].deleted, counts[Entity.TRIAL].deleted) == (1, 2)
    assert deletions(warehouse_path) == [
        ("lead", "L2", "mirror"),
        ("trial", "T2", "mirror"),
        ("trial", "T3", "mirror"),
    ]
    assert sql(
        warehouse_path, "SELECT leads_deleted, trials_deleted FROM mogulflow_runs WHERE run_id = 'night-2'"
    ) == [(1, 2)]
    gone = sql(
        warehouse_path, "SELECT count(*) FROM mogulflow_sync_state WHERE external_id IN ('L2', 'T2', 'T3')"
    )
    assert gone == [(0,)]


def test_a_rejected_row_counts_as_present(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "UPDATE leads SET email = 'broken' WHERE lead_id = 'L3'")

    account = run_sync_account(warehouse_path, client, run_id="night-2", **APPROVED)

    assert synced(sandbox)[1] == {"L1", "L2", "L3", "L4"}
    assert account.summary.counts[Entity.LEAD].deleted == 0


def test_never_deleted_a_merged_customer_another_source_or_what_mogulflow_did_not_create(
    warehouse_path, client, sandbox
):
    first_sync(warehouse_path, client, sandbox)
    ds = synced(sandbox)[0]
    stripe = sandbox.state.create_data_source("Stripe")["uuid"]
    paying = sandbox.state.create_customer(data_source_uuid=stripe, external_id="cus_1")
    sandbox.state.merge_now(
        {"from": {"data_source_uuid": ds, "external_id": "L4"}, "into": {"customer_uuid": paying["uuid"]}}
    )
    sandbox.state.create_customer(data_source_uuid=ds, external_id="SOMEONE_ELSES")  # not in leads, not ours
    sandbox.state.create_customer(data_source_uuid=stripe, external_id="L1")  # another source, same id
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id IN ('L1', 'L4')")
    sql(warehouse_path, "DELETE FROM trials WHERE lead_id IN ('L1', 'L4')")

    account = run_sync_account(warehouse_path, client, run_id="night-2", **APPROVED)

    customers = {c["external_id"] for c in sandbox.state.customers(ds)}
    assert "L1" not in customers  # ours and gone: deleted
    assert "SOMEONE_ELSES" in customers  # not created by mogulflow: kept
    assert sandbox.state.find_customer(ds, "L4")["uuid"] == paying["uuid"]  # merged: kept
    assert sandbox.state.find_customer(stripe, "L1") is not None
    assert sandbox.state.find_customer(stripe, "cus_1") is not None
    assert account.summary.counts[Entity.LEAD].deleted == 1
    assert [row[1] for row in deletions(warehouse_path) if row[0] == "lead"] == ["L1"]


def test_above_the_ratio_a_person_who_rejects_gets_nothing_deleted(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id = 'L2'")  # 1 of 4 synced: above 1 %

    account = run_sync_account(
        warehouse_path, client, run_id="night-2", person_answers=ApprovalDecision.REJECTED, **MIRROR
    )

    assert "L2" in synced(sandbox)[1]
    assert account.summary.counts[Entity.LEAD].deleted == 0
    assert "mirror deletes rejected by a person" in account.summary.message
    assert account.details.delete_approval.decision is ApprovalDecision.REJECTED


def test_an_empty_leads_extract_never_deletes_without_approval_whatever_the_ratio(
    warehouse_path, client, sandbox
):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads")

    account = run_sync_account(
        warehouse_path,
        client,
        run_id="night-2",
        person_answers=ApprovalDecision.TIMED_OUT,
        **{**MIRROR, "max_delete_ratio": 1.0},
    )

    assert synced(sandbox)[1] == {"L1", "L2", "L3", "L4"}
    assert account.summary.outcome == "failed"  # a timed-out approval alerts
    assert "timed out: nothing deleted" in account.summary.message


def test_within_the_ratio_mirror_deletes_need_nobody(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id = 'L2'")

    account = run_sync_account(
        warehouse_path, client, run_id="night-2", **{**MIRROR, "max_delete_ratio": 0.3}
    )

    assert "L2" not in synced(sandbox)[1]
    assert account.details.delete_approval.decision is ApprovalDecision.NOT_NEEDED


def test_a_dry_run_lists_what_it_would_delete_and_deletes_nothing(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id = 'L2'")
    sql(warehouse_path, "DELETE FROM trials WHERE trial_id = 'T3'")
    before = len(sandbox.requests)

    account = run_sync_account(warehouse_path, client, run_id="night-2", **{**MIRROR, "dry_run": True})

    assert [r for r in sandbox.requests[before:] if r.method == "DELETE"] == []
    assert synced(sandbox)[1] == {"L1", "L2", "L3", "L4"}
    assert account.details.would_delete == {Entity.LEAD: ("L2",), Entity.TRIAL: ("T3",)}
    assert deletions(warehouse_path) == []


def test_without_mirror_deletes_or_full_refresh_nothing_is_deleted(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id = 'L2'")

    run_sync_account(warehouse_path, client, run_id="night-2", full_refresh=True, approve_deletes=True)
    run_sync_account(
        warehouse_path,
        client,
        run_id="night-3",
        mirror_deletes=True,
        approve_deletes=True,
        start="2025-01-01T00:00:00Z",
        end="2025-12-01T00:00:00Z",
    )

    assert "L2" in synced(sandbox)[1]


def test_a_delete_whose_answer_was_lost_counts_once_the_lookup_shows_it_gone(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM trials WHERE trial_id = 'T3'")
    sandbox.set_faults(Faults(drop_rate_after=1.0, seed=1))  # every applied write loses its answer

    account = run_sync_account(warehouse_path, client, run_id="night-2", **APPROVED)

    sandbox.set_faults(Faults())
    deletes = [r for r in sandbox.requests if r.method == "DELETE"]
    assert [r.status for r in deletes] == [None, 404]  # applied, answer lost; the retry finds nothing
    assert synced(sandbox)[2] == {"T1", "T2"}
    assert account.summary.counts[Entity.TRIAL].deleted == 1
    assert account.summary.counts[Entity.TRIAL].failed == 0


def test_a_run_killed_mid_delete_is_settled_before_the_next_loads(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id IN ('L2', 'L3')")
    # The killed run: it planned L2 and L3, deleted L2's customer, and died before recording it.
    ds = synced(sandbox)[0]
    settings = resolve_settings(
        {**APPROVED},
        run_id="killed",
        dag_id="chartmogul_leads_trials",
        data_interval_start=None,
        data_interval_end=None,
    )
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    try:
        plan_deletes(warehouse, settings, ds, leads_trials.extract_and_validate(warehouse, settings, ds))
        assert load_state(warehouse, Entity.LEAD, ds)["L2"].status == "synced"
    finally:
        warehouse.close()
    sandbox.state.delete_customer(sandbox.state.find_customer(ds, "L2")["uuid"])
    # L2 and L3 come back to the warehouse before the next run.
    for lead_id, name in (("L2", "Beta Ltd"), ("L3", "Gamma Inc")):
        insert = "INSERT INTO leads (lead_id, company_name, updated_at) VALUES (?, ?, ?)"
        sql(warehouse_path, insert, lead_id, name, datetime(2025, 3, 5))

    account = run_sync_account(warehouse_path, client, run_id="night-2", **APPROVED)

    assert synced(sandbox)[1] == {"L1", "L2", "L3", "L4"}  # L2 created again, L3 never deleted
    assert account.summary.counts[Entity.LEAD].created == 1  # settled before the loads read the state
    assert deletions(warehouse_path) == [("lead", "L2", "mirror"), ("trial", "T2", "mirror")]
    assert sql(warehouse_path, "SELECT count(*) FROM mogulflow_delete_plan") == [(0,)]


# ---- erasure ------------------------------------------------------------------------------------


def add_erasure(path, lead_id):
    sql(path, "CREATE TABLE IF NOT EXISTS lead_erasures (lead_id TEXT, requested_at TIMESTAMP)")
    sql(path, "INSERT INTO lead_erasures VALUES (?, ?)", lead_id, datetime(2025, 6, 1))


def text_cells(path):
    """Every value of every text column of every mogulflow table."""
    warehouse = Warehouse.open_duckdb(str(path))
    try:
        cells = []
        for table in declared_tables(read_sql("mogulflow_tables.sql")).values():
            for column in table.columns:
                if column.kind is ColumnKind.TEXT:
                    frame = warehouse.query_frame(f"SELECT {column.name} FROM {table.name}")
                    cells += [(table.name, column.name, v) for v in frame[column.name].dropna().astype(str)]
        return cells
    finally:
        warehouse.close()


def test_erasure_deletes_the_lead_and_leaves_no_trace_in_any_mogulflow_table(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    # L1's traces: its sync state and payload, a dry run naming it, a reject of its own row.
    run_sync_account(warehouse_path, client, run_id="dry", **{**MIRROR, "dry_run": True})
    sql(
        warehouse_path,
        "UPDATE leads SET email = 'ops@acme' WHERE lead_id = 'L1' AND company_name = 'Acme GmbH'",
    )
    run_sync_account(warehouse_path, client, run_id="night-2", full_refresh=True)
    assert any(v for *_, v in text_cells(warehouse_path) if "ops@acme" in v)
    add_erasure(warehouse_path, "L1")

    account = run_sync_account(warehouse_path, client, run_id="night-3", start="2025-06-01T00:00:00Z")

    _, customers, invoices = synced(sandbox)
    assert "L1" not in customers and not {"T1", "T5"} & invoices
    assert account.summary.counts[Entity.LEAD].deleted == 1
    # The ids as tokens (not "T1" inside "2025-03-03T12:00"), the personal values anywhere.
    personal = re.compile(r"(?<![A-Za-z0-9])(L1|T1|T5)(?![0-9])|ops@acme|Acme GmbH|Acme \(old name\)")
    assert [cell for cell in text_cells(warehouse_path) if personal.search(cell[2])] == []
    assert sql(warehouse_path, "SELECT lead_hash, outcome FROM mogulflow_erasures") == [
        (erased_id("L1"), "erased")
    ]
    assert sorted(deletions(warehouse_path)) == [
        ("lead", erased_id("L1"), "erasure"),
        ("trial", erased_id("T1"), "erasure"),
    ]


def test_an_erased_lead_is_never_synced_again_and_its_erasure_runs_once(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    add_erasure(warehouse_path, "L2")
    run_sync_account(warehouse_path, client, run_id="night-2", **MIRROR)
    before = len(sandbox.requests)

    account = run_sync_account(warehouse_path, client, run_id="night-3", **MIRROR)

    assert "L2" not in synced(sandbox)[1]
    assert [r for r in sandbox.requests[before:] if "L2" in r.query or r.method == "DELETE"] == []
    assert account.summary.counts[Entity.LEAD].deleted == 0


def test_an_erased_lead_s_attributes_and_tags_are_never_read_again(warehouse_path, client, sandbox):
    sql(
        warehouse_path,
        "CREATE TABLE lead_attributes (lead_id TEXT, key TEXT, type TEXT, value TEXT, updated_at TIMESTAMP)",
    )
    sql(
        warehouse_path,
        "CREATE TABLE lead_tags (lead_id TEXT, tag TEXT, present BOOLEAN, updated_at TIMESTAMP)",
    )
    sql(
        warehouse_path,
        "INSERT INTO lead_attributes VALUES "
        "('L2', 'lead_source', 'String', 'webinar-erasable', '2025-06-01 10:00')",
    )
    sql(warehouse_path, "INSERT INTO lead_tags VALUES ('L2', 'vip-erasable', true, '2025-06-01 10:00')")
    first_sync(warehouse_path, client, sandbox)
    add_erasure(warehouse_path, "L2")
    # The erasure's night, then one more: the lead's attribute and tag rows are still in the source.
    run_sync_account(warehouse_path, client, run_id="night-2", **MIRROR)
    before = len(sandbox.requests)

    account = run_sync_account(warehouse_path, client, run_id="night-3", **MIRROR)

    assert "L2" not in synced(sandbox)[1]
    assert [r for r in sandbox.requests[before:] if r.method != "GET"] == []
    assert account.summary.counts[Entity.ATTRIBUTE].rejected == 0
    assert account.summary.counts[Entity.TAG].rejected == 0
    personal = re.compile(r"(?<![A-Za-z0-9])L2(?![0-9])|webinar-erasable|vip-erasable")
    assert [cell for cell in text_cells(warehouse_path) if personal.search(cell[2])] == []


def test_a_merged_lead_s_erasure_is_reported_for_a_person(warehouse_path, client, sandbox):
    first_sync(warehouse_path, client, sandbox)
    ds = synced(sandbox)[0]
    stripe = sandbox.state.create_data_source("Stripe")["uuid"]
    paying = sandbox.state.create_customer(data_source_uuid=stripe, external_id="cus_1")
    sandbox.state.merge_now(
        {"from": {"data_source_uuid": ds, "external_id": "L3"}, "into": {"customer_uuid": paying["uuid"]}}
    )
    add_erasure(warehouse_path, "L3")

    account = run_sync_account(warehouse_path, client, run_id="night-2", **MIRROR)

    assert sandbox.state.get_customer(paying["uuid"])  # the paying customer stays
    assert account.details.erasures_for_a_person == (paying["uuid"],)
    assert "need a person" in account.summary.message
    assert sql(warehouse_path, "SELECT outcome, note FROM mogulflow_erasures") == [
        ("needs_person", paying["uuid"])
    ]


def test_an_older_runs_table_gets_the_deleted_columns_on_the_first_run(tmp_path):
    path = tmp_path / "old.duckdb"
    sql(path, "CREATE TABLE mogulflow_runs (run_id TEXT NOT NULL, dag_id TEXT NOT NULL, leads_failed BIGINT)")
    sql(path, "INSERT INTO mogulflow_runs VALUES ('old', 'chartmogul_leads_trials', 3)")
    warehouse = Warehouse.open_duckdb(str(path))
    try:
        ensure_tables(warehouse)
    finally:
        warehouse.close()

    assert sql(path, "SELECT leads_failed, leads_deleted, trials_deleted FROM mogulflow_runs") == [(3, 0, 0)]
