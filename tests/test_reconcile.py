"""Reconciliation: what mogulflow synced against what the data source holds in ChartMogul.

A sync of the hand-written `sample_rows` warehouse into the sandbox (real HTTP) gives a known
starting point; drift is then planted in the sandbox through its API, as someone editing
ChartMogul would, and the reconciliation must find exactly it, record it, and (with resend) have
the next sync fix it. The expected numbers are worked out from `sample_rows` in the comments.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from direct_sync import API_KEY, query, run_row, run_sync_directly, sandbox_client

from mogulflow.reconcile.compare import (
    Difference,
    DifferenceKind,
    EntityComparison,
    MonthCount,
    compare_entity,
    reconcile,
)
from mogulflow.reconcile.run import ReconcileRequest, run_reconciliation
from mogulflow.reconcile.sides import EntitySide, as_text
from mogulflow.values.entities import Entity
from mogulflow.warehouse.connection import Warehouse

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# A window holding no source row: the next sync reads only the rows marked for re-sending.
QUIET_WINDOW = {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}
# The sample warehouse rejects a third of its rows on purpose.
LENIENT = {"max_reject_ratio": 0.5}

MISSING, EXTRA, DIFFERENT = DifferenceKind.MISSING, DifferenceKind.EXTRA, DifferenceKind.DIFFERENT
MERGED = DifferenceKind.MERGED
LEAD, PLAN, TRIAL = Entity.LEAD, Entity.PLAN, Entity.TRIAL


# ---- arranging ---------------------------------------------------------------------------------


@pytest.fixture
def client(sandbox):
    with sandbox_client(sandbox.url) as client:
        yield client


@pytest.fixture
def synced(sandbox, client, warehouse_path):
    """The sample warehouse synced once (full refresh); the data source's uuid."""
    run_sync_directly(warehouse_path, client, run_id="sync_1", full_refresh=True, **LENIENT)
    return sandbox.state.data_source_by_name("Leads")["uuid"]


def api(sandbox, method, path, body=None):
    """One request to the sandbox's ChartMogul API, as a person editing ChartMogul would send it."""
    response = httpx.request(method, f"{sandbox.url}{path}", json=body, auth=(API_KEY, ""))
    response.raise_for_status()
    return response


def customer_uuid(sandbox, ds, external_id):
    return sandbox.state.find_customer(ds, external_id)["uuid"]


def plant_drift(sandbox, ds):
    """The issue's three kinds of drift: a deleted customer (L2, and with it its invoice T2), a changed
    lead date (L1), and an invoice nobody synced (on L3's customer)."""
    api(sandbox, "DELETE", f"/v1/customers/{customer_uuid(sandbox, ds, 'L2')}")
    api(
        sandbox,
        "PATCH",
        f"/v1/customers/{customer_uuid(sandbox, ds, 'L1')}",
        {"lead_created_at": "2024-12-31"},
    )
    extra = {
        "external_id": "INV_BY_HAND",
        "date": "2025-03-20T00:00:00Z",
        "currency": "USD",
        "data_source_uuid": ds,
        "customer_external_id": "L3",
        "line_items": [
            {"type": "one_time", "external_id": "LI_BY_HAND", "amount_in_cents": 9900, "quantity": 1}
        ],
    }
    api(
        sandbox,
        "POST",
        f"/v1/import/customers/{customer_uuid(sandbox, ds, 'L3')}/invoices",
        {"invoices": [extra]},
    )


def reconcile_run(warehouse_path, client, *, run_id="reconcile_1", resend=False):
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    try:
        request = ReconcileRequest(run_id, "chartmogul_reconcile", "Leads", resend, datetime.now(UTC))
        return run_reconciliation(warehouse, client, request)
    finally:
        warehouse.close()


def compare_now(warehouse_path, client, ds):
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    try:
        return reconcile(warehouse, client, ds)
    finally:
        warehouse.close()


def writes(sandbox):
    return [(r.method, r.path) for r in sandbox.requests if r.method in WRITE_METHODS]


# ---- counts on the sample warehouse ------------------------------------------------------------


def test_a_fresh_sync_agrees_with_chartmogul_in_hand_computed_counts(synced, client, warehouse_path):
    result = compare_now(warehouse_path, client, synced)

    assert result.in_agreement
    # Valid leads L1-L4. Their lead dates (the contract's default rule): L1 its own 2025-01-02,
    # L2 its free trial 2025-02-01, L3 its earliest trial T3 2025-03-03, L4 none at all.
    assert result.comparisons[LEAD] == EntityComparison(
        LEAD,
        warehouse=4,
        chartmogul=4,
        agreeing=4,
        missing=0,
        extra=0,
        different=0,
        settling=0,
        months=(
            MonthCount("2025-01", 1, 1),
            MonthCount("2025-02", 1, 1),
            MonthCount("2025-03", 1, 1),
            MonthCount("none", 1, 1),
        ),
    )
    # P1 and P2 (P3's weekly interval is rejected); plans have no month.
    assert result.comparisons[PLAN] == EntityComparison(PLAN, 2, 2, 2, 0, 0, 0, 0, ())
    # T1 2025-01-05, T2 2025-02-01, T3 2025-03-03 (T4, T5 are waiting for a rejected lead and plan).
    assert result.comparisons[TRIAL].months == (
        MonthCount("2025-01", 1, 1),
        MonthCount("2025-02", 1, 1),
        MonthCount("2025-03", 1, 1),
    )
    assert (result.comparisons[TRIAL].warehouse, result.comparisons[TRIAL].agreeing) == (3, 3)


# ---- planted drift -----------------------------------------------------------------------------


def test_planted_drift_is_found_exactly_with_its_kinds_fields_and_values(
    sandbox, synced, client, warehouse_path
):
    plant_drift(sandbox, synced)

    result = compare_now(warehouse_path, client, synced)

    assert set(result.differences) == {
        Difference(LEAD, "L1", DIFFERENT, "lead_created_at", "2025-01-02T09:00:00Z", "2024-12-31T00:00:00Z"),
        Difference(LEAD, "L2", MISSING),
        Difference(TRIAL, "T2", MISSING),  # deleting a customer deletes its invoices
        Difference(TRIAL, "INV_BY_HAND", EXTRA),
    }
    leads, trials = result.comparisons[LEAD], result.comparisons[TRIAL]
    assert (leads.warehouse, leads.chartmogul, leads.agreeing, leads.missing, leads.different) == (
        4,
        3,
        2,
        1,
        1,
    )
    # L1 moved from January to December in ChartMogul; L2 (February) is gone.
    assert leads.months == (
        MonthCount("2024-12", 0, 1),
        MonthCount("2025-01", 1, 0),
        MonthCount("2025-02", 1, 0),
        MonthCount("2025-03", 1, 1),
        MonthCount("none", 1, 1),
    )
    # T2 (February) is gone; the hand-made invoice is dated March.
    assert trials.months == (
        MonthCount("2025-01", 1, 1),
        MonthCount("2025-02", 1, 0),
        MonthCount("2025-03", 1, 2),
    )
    assert (trials.warehouse, trials.chartmogul, trials.missing, trials.extra) == (3, 3, 1, 1)
    assert result.comparisons[PLAN].agreeing == 2


def test_a_changed_trial_amount_and_date_are_each_a_difference(sandbox, synced, client, warehouse_path):
    [invoice] = [i for i in sandbox.state.invoices(data_source_uuid=synced) if i["external_id"] == "T1"]
    api(sandbox, "DELETE", f"/v1/invoices/{invoice['uuid']}")
    changed = {
        "external_id": "T1",
        "date": "2025-01-06T10:00:00Z",
        "currency": "USD",
        "data_source_uuid": synced,
        "customer_external_id": "L1",
        "line_items": [{**invoice["line_items"][0], "amount_in_cents": 4200, "uuid": None}],
    }
    changed["line_items"][0].pop("uuid")
    api(
        sandbox,
        "POST",
        f"/v1/import/customers/{customer_uuid(sandbox, synced, 'L1')}/invoices",
        {"invoices": [changed]},
    )

    result = compare_now(warehouse_path, client, synced)

    assert set(result.differences) == {
        Difference(TRIAL, "T1", DIFFERENT, "date", "2025-01-05T10:00:00Z", "2025-01-06T10:00:00Z"),
        Difference(TRIAL, "T1", DIFFERENT, "amount_in_cents", "0", "4200"),
    }
    assert result.comparisons[TRIAL].different == 1  # one row, two fields


def test_reconciliation_never_writes_to_chartmogul(sandbox, synced, client, warehouse_path):
    plant_drift(sandbox, synced)
    before = writes(sandbox)

    reconcile_run(warehouse_path, client, resend=True)

    assert writes(sandbox) == before


def test_every_page_of_the_listing_is_read(sandbox, synced, client, warehouse_path):
    # ChartMogul serves at most 200 objects per page: 205 customers made by hand need two pages
    for number in range(205):
        client.create_customer({"data_source_uuid": synced, "external_id": f"BY_HAND_{number}", "name": "x"})

    result = compare_now(warehouse_path, client, synced)

    assert result.comparisons[LEAD].extra == 205
    assert result.comparisons[LEAD].agreeing == 4


# ---- what is recorded --------------------------------------------------------------------------


def test_each_difference_is_one_row_of_mogulflow_reconciliation(sandbox, synced, client, warehouse_path):
    plant_drift(sandbox, synced)

    report = reconcile_run(warehouse_path, client, run_id="reconcile_7")

    rows = query(
        warehouse_path,
        "SELECT run_id, dag_id, data_source_uuid, entity, external_id, kind, field, warehouse_value, "
        "chartmogul_value FROM mogulflow_reconciliation ORDER BY entity, external_id",
    )
    assert rows == [
        ("reconcile_7", "chartmogul_reconcile", synced, "lead", "L1", "different", "lead_created_at",
         "2025-01-02T09:00:00Z", "2024-12-31T00:00:00Z"),
        ("reconcile_7", "chartmogul_reconcile", synced, "lead", "L2", "missing", None, None, None),
        ("reconcile_7", "chartmogul_reconcile", synced, "trial", "INV_BY_HAND", "extra", None, None, None),
        ("reconcile_7", "chartmogul_reconcile", synced, "trial", "T2", "missing", None, None, None),
    ]  # fmt: skip
    [(checked_at,)] = query(warehouse_path, "SELECT DISTINCT checked_at FROM mogulflow_reconciliation")
    assert isinstance(checked_at, datetime)
    assert dict(report.differences) == {MISSING: 2, EXTRA: 1, DIFFERENT: 1, MERGED: 0}


def test_a_retried_reconciliation_replaces_its_rows_instead_of_doubling_them(
    sandbox, synced, client, warehouse_path
):
    plant_drift(sandbox, synced)

    reconcile_run(warehouse_path, client, run_id="reconcile_1")
    reconcile_run(warehouse_path, client, run_id="reconcile_1")

    assert query(warehouse_path, "SELECT count(*) FROM mogulflow_reconciliation") == [(4,)]


def test_the_run_is_accounted_for_in_mogulflow_runs_with_its_months(sandbox, synced, client, warehouse_path):
    plant_drift(sandbox, synced)

    reconcile_run(warehouse_path, client, run_id="reconcile_1")

    row = run_row(warehouse_path, "reconcile_1")
    assert row["dag_id"] == "chartmogul_reconcile"
    assert row["outcome"] == "failed"  # drift: someone should look
    assert "2 missing, 1 extra, 1 different" in row["message"] and "resend=true" in row["message"]
    # extracted = compared; unchanged = agreeing; failed = missing or different
    assert (row["leads_extracted"], row["leads_unchanged"], row["leads_failed"]) == (4, 2, 2)
    assert (row["plans_extracted"], row["plans_unchanged"], row["plans_failed"]) == (2, 2, 0)
    assert (row["trials_extracted"], row["trials_unchanged"], row["trials_failed"]) == (3, 2, 1)
    assert row["data_source_name"] == "Leads" and row["data_source_uuid"] == synced
    details = json.loads(row["details"])
    leads = dict(details["entities"])["lead"]
    assert leads["missing"] == 1 and leads["different"] == 1
    assert {"month": "2024-12", "warehouse": 0, "chartmogul": 1} in leads["months"]
    assert dict(details["examples"])["extra"] == ["trial:INV_BY_HAND"]


def test_a_run_in_agreement_ends_success(synced, client, warehouse_path):
    report = reconcile_run(warehouse_path, client)

    assert str(report.outcome) == "success"
    assert run_row(warehouse_path, "reconcile_1")["outcome"] == "success"
    assert query(warehouse_path, "SELECT count(*) FROM mogulflow_reconciliation") == [(0,)]


def test_an_unknown_data_source_fails_the_run_and_records_why(client, warehouse_path):
    request = ReconcileRequest("reconcile_1", "chartmogul_reconcile", "Nope", False, datetime.now(UTC))
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    try:
        with pytest.raises(ValueError, match="no data source named 'Nope'"):
            run_reconciliation(warehouse, client, request)
    finally:
        warehouse.close()

    row = run_row(warehouse_path, "reconcile_1")
    assert row["outcome"] == "failed" and "Nope" in row["message"]


# ---- resend ------------------------------------------------------------------------------------


def test_without_resend_the_sync_state_is_left_alone(sandbox, synced, client, warehouse_path):
    plant_drift(sandbox, synced)
    state_sql = "SELECT * FROM mogulflow_sync_state ORDER BY entity, external_id"
    before = query(warehouse_path, state_sql)

    reconcile_run(warehouse_path, client, resend=False)

    assert query(warehouse_path, state_sql) == before


def test_resend_marks_the_missing_and_different_rows_and_only_them(sandbox, synced, client, warehouse_path):
    plant_drift(sandbox, synced)

    report = reconcile_run(warehouse_path, client, resend=True)

    marked = query(
        warehouse_path,
        "SELECT entity, external_id, status, content_hash IS NULL, chartmogul_uuid IS NULL "
        "FROM mogulflow_sync_state WHERE status = 'failed' ORDER BY entity, external_id",
    )
    # a different row keeps its uuid (PATCHed again); a missing one forgets it (created again)
    assert marked == [
        ("lead", "L1", "failed", True, False),
        ("lead", "L2", "failed", True, True),
        ("trial", "T2", "failed", True, True),
    ]
    assert {str(e): n for e, n in report.resent.items()} == {"lead": 2, "plan": 0, "trial": 1}


def test_after_resend_the_next_sync_fixes_the_drift(sandbox, synced, client, warehouse_path):
    plant_drift(sandbox, synced)
    reconcile_run(warehouse_path, client, run_id="reconcile_1", resend=True)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", **QUIET_WINDOW, **LENIENT)

    # L2 and T2 are created again, L1 re-sent (its duplicate row is rejected again, as in any run)
    assert (summary.counts[LEAD].created, summary.counts[LEAD].updated) == (1, 1)
    assert summary.counts[TRIAL].created == 1
    l1 = sandbox.state.find_customer(synced, "L1")
    assert l1["lead_created_at"].startswith("2025-01-02T09:00:00")
    after = compare_now(warehouse_path, client, synced)
    # what mogulflow synced is back; the invoice it never wrote is still only reported
    assert after.differences == (Difference(TRIAL, "INV_BY_HAND", EXTRA),)
    assert after.comparisons[LEAD].agreeing == 4 and after.comparisons[TRIAL].agreeing == 3


# ---- the comparison itself, on hand-made sides -------------------------------------------------


def test_rows_whose_last_sync_failed_or_were_merged_are_compared_on_neither_side():
    ours = EntitySide(LEAD, {"A": ("2025-01-01T00:00:00Z", None)}, settling=frozenset({"B", "C"}))
    theirs = EntitySide(LEAD, {"A": ("2025-01-01T00:00:00Z", None), "B": (None, None), "C": (None, None)})

    comparison, differences = compare_entity(ours, theirs)

    assert differences == []
    assert (comparison.warehouse, comparison.chartmogul, comparison.settling) == (1, 1, 2)


def test_values_compare_as_the_api_means_them():
    # the API echoes timestamps with milliseconds, dates without a time, amounts as numbers
    assert as_text("2025-01-02T09:00:00.000Z") == as_text(datetime(2025, 1, 2, 9)) == "2025-01-02T09:00:00Z"
    assert as_text("2025-01-02 09:00:00 UTC") == "2025-01-02T09:00:00Z"
    assert as_text(1500) == as_text(1500.0) == "1500"
    assert as_text("  ") is None and as_text(None) is None
    assert as_text("Pro monthly") == "Pro monthly"
