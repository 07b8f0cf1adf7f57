"""Every count true (issue 17): writes act on what ChartMogul holds now, "already exists" is compared,
re-sending repairs exactly, and a run's counts are what the sandbox's request log shows it applied.

Airflow-free: the steps of `chartmogul_leads_trials` (`direct_sync`) against the sample warehouse and the
sandbox over HTTP; ChartMogul is changed behind mogulflow's back through the API (as a person would) or
the sandbox's `/_sandbox/merges` (as ChartMogul's own automatic merging would).
"""

from __future__ import annotations

from collections import Counter

import duckdb
import httpx
import pytest
from direct_sync import assert_account_adds_up, query, run_row, run_sync_directly, sandbox_client
from test_reconcile import LENIENT, QUIET_WINDOW, api, compare_now, customer_uuid, reconcile_run

from mogulflow.load import bulk as load_bulk
from mogulflow.reconcile.compare import Difference, DifferenceKind
from mogulflow.values.entities import Entity

LEAD, PLAN, TRIAL = Entity.LEAD, Entity.PLAN, Entity.TRIAL
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
OBJECT_OF = {"customer": LEAD, "plan": PLAN, "invoice": TRIAL}


# ---- arranging ---------------------------------------------------------------------------------


@pytest.fixture
def client(sandbox):
    with sandbox_client(sandbox.url) as client:
        yield client


@pytest.fixture
def ds(sandbox, client, warehouse_path) -> str:
    """The sample warehouse synced once (full refresh); the data source's uuid."""
    run_sync_directly(warehouse_path, client, run_id="sync_1", full_refresh=True, **LENIENT)
    return sandbox.state.data_source_by_name("Leads")["uuid"]


def invoice(sandbox, ds: str, external_id: str) -> dict:
    [found] = [i for i in sandbox.state.invoices(data_source_uuid=ds) if i["external_id"] == external_id]
    return found


def reimport_by_hand(sandbox, ds: str, external_id: str, **line_changes) -> dict:
    """Delete an invoice and import it again under the same external id, changed: another uuid."""
    old = invoice(sandbox, ds, external_id)
    api(sandbox, "DELETE", f"/v1/invoices/{old['uuid']}")
    line = {k: v for k, v in old["line_items"][0].items() if k != "uuid"} | line_changes
    body = {
        "external_id": external_id,
        "date": old["date"],
        "currency": old["currency"],
        "data_source_uuid": ds,
        "customer_external_id": old["customer_external_id"],
        "line_items": [line],
    }
    answer = api(
        sandbox, "POST", f"/v1/import/customers/{old['customer_uuid']}/invoices", {"invoices": [body]}
    )
    return answer.json()["invoices"][0]


def seq(sandbox) -> int:
    return max((r.seq for r in sandbox.requests), default=0)


def writes_since(sandbox, since: int) -> list[tuple[str, str, int | None]]:
    return [(r.method, r.path, r.status) for r in sandbox.requests if r.seq > since and r.method in WRITES]


def applied_since(sandbox, since: int, ds: str) -> dict[Entity, dict[str, str]]:
    """What the request log shows the requests after `since` did to each object of the data source:
    per entity, external id → created / updated (a deleted and re-imported invoice is updated) / deleted."""
    changes: dict[Entity, dict[str, list[str]]] = {LEAD: {}, PLAN: {}, TRIAL: {}}
    for request in sandbox.requests:
        if request.seq > since:
            for change in request.changes:
                if change.data_source_uuid == ds:
                    changes[OBJECT_OF[change.what]].setdefault(change.external_id, []).append(change.change)
    return {entity: {i: _net(c) for i, c in by_id.items()} for entity, by_id in changes.items()}


def _net(changes: list[str]) -> str:
    if changes[0] == "deleted" and changes[-1] == "created":
        return "updated"  # replaced
    return "created" if "created" in changes else changes[-1]


def assert_counts_are_what_was_applied(summary, applied: dict[Entity, dict[str, str]]) -> None:
    """The run's created and updated counts, per entity, are the objects the log shows it created and
    updated: no write counted that ChartMogul did not apply, none applied that was not counted."""
    for entity in (LEAD, PLAN, TRIAL):
        tally = Counter(applied[entity].values())
        counts = summary.counts[entity]
        assert (counts.created, counts.updated) == (tally["created"], tally["updated"]), (entity, applied)


# ---- the story -------------------------------------------------------------------------


def test_an_invoice_reimported_behind_our_back_is_repaired_by_resend_with_honest_counts(
    sandbox, ds, client, warehouse_path
):
    old_uuid = invoice(sandbox, ds, "T1")["uuid"]
    by_hand = reimport_by_hand(sandbox, ds, "T1", amount_in_cents=4200)

    found = compare_now(warehouse_path, client, ds)
    assert found.differences == (
        Difference(TRIAL, "T1", DifferenceKind.DIFFERENT, "amount_in_cents", "0", "4200"),
    )
    reconcile_run(warehouse_path, client, run_id="reconcile_1", resend=True)
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", **QUIET_WINDOW, **LENIENT)

    # ChartMogul's invoice, the one found under T1 now, is replaced: never a DELETE of the old uuid
    assert writes_since(sandbox, before) == [
        ("DELETE", f"/v1/invoices/{by_hand['uuid']}", 204),
        ("POST", f"/v1/import/customers/{customer_uuid(sandbox, ds, 'L1')}/invoices", 201),
    ]
    assert old_uuid not in str(sandbox.requests[-5:])
    assert (summary.counts[TRIAL].updated, summary.counts[TRIAL].failed) == (1, 0)
    assert_counts_are_what_was_applied(summary, applied_since(sandbox, before, ds))
    assert invoice(sandbox, ds, "T1")["line_items"][0]["amount_in_cents"] == 0
    assert compare_now(warehouse_path, client, ds).differences == ()
    assert_account_adds_up(run_row(warehouse_path, "sync_2"))


def test_a_changed_trial_whose_invoice_was_reimported_behind_our_back_replaces_the_one_found(
    sandbox, ds, client, warehouse_path
):
    old_uuid = invoice(sandbox, ds, "T1")["uuid"]
    by_hand = reimport_by_hand(sandbox, ds, "T1", amount_in_cents=4200)
    with duckdb.connect(str(warehouse_path)) as warehouse:
        warehouse.execute(
            "UPDATE trials SET quantity = 3, updated_at = TIMESTAMP '2025-06-01' WHERE trial_id = 'T1'"
        )
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    # the stored uuid answers 404: what ChartMogul holds under T1 now is looked up and replaced
    assert writes_since(sandbox, before) == [
        ("DELETE", f"/v1/invoices/{old_uuid}", 404),
        ("DELETE", f"/v1/invoices/{by_hand['uuid']}", 204),
        ("POST", f"/v1/import/customers/{customer_uuid(sandbox, ds, 'L1')}/invoices", 201),
    ]
    assert (summary.counts[TRIAL].updated, summary.counts[TRIAL].failed) == (1, 0)
    assert_counts_are_what_was_applied(summary, applied_since(sandbox, before, ds))
    line = invoice(sandbox, ds, "T1")["line_items"][0]
    assert (line["quantity"], line["amount_in_cents"]) == (3, 0)


# ---- "already exists" is not success -----------------------------------------------------------


def forget_state(warehouse_path, entity: str, external_id: str) -> None:
    """A lost sync-state entry: the next run does not know the object was written."""
    with duckdb.connect(str(warehouse_path)) as warehouse:
        warehouse.execute(
            "DELETE FROM mogulflow_sync_state WHERE entity = ? AND external_id = ?", [entity, external_id]
        )


def test_an_invoice_that_already_exists_as_meant_counts_unchanged(sandbox, ds, client, warehouse_path):
    forget_state(warehouse_path, "trial", "T1")
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    assert writes_since(sandbox, before) == [
        ("POST", f"/v1/import/customers/{customer_uuid(sandbox, ds, 'L1')}/invoices", 422)
    ]
    counts = summary.counts[TRIAL]
    assert (counts.created, counts.updated, counts.unchanged, counts.failed) == (0, 0, 3, 0)
    [(uuid,)] = query(
        warehouse_path, "SELECT chartmogul_uuid FROM mogulflow_sync_state WHERE external_id = 'T1'"
    )
    assert uuid == invoice(sandbox, ds, "T1")["uuid"]


def test_an_invoice_that_already_exists_with_other_values_is_replaced_and_counted_updated(
    sandbox, ds, client, warehouse_path
):
    forget_state(warehouse_path, "trial", "T1")
    by_hand = reimport_by_hand(sandbox, ds, "T1", amount_in_cents=4200)
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    l1 = customer_uuid(sandbox, ds, "L1")
    assert writes_since(sandbox, before) == [
        ("POST", f"/v1/import/customers/{l1}/invoices", 422),
        ("DELETE", f"/v1/invoices/{by_hand['uuid']}", 204),
        ("POST", f"/v1/import/customers/{l1}/invoices", 201),
    ]
    assert (summary.counts[TRIAL].created, summary.counts[TRIAL].updated) == (0, 1)
    assert_counts_are_what_was_applied(summary, applied_since(sandbox, before, ds))
    assert invoice(sandbox, ds, "T1")["line_items"][0]["amount_in_cents"] == 0


def test_a_customer_that_already_exists_is_compared_and_patched_only_where_it_differs(
    sandbox, ds, client, warehouse_path
):
    forget_state(warehouse_path, "lead", "L2")
    api(sandbox, "PATCH", f"/v1/customers/{customer_uuid(sandbox, ds, 'L2')}", {"city": "Leeds"})
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    l2 = customer_uuid(sandbox, ds, "L2")
    assert writes_since(sandbox, before) == [
        ("POST", "/v1/customers", 422),
        ("PATCH", f"/v1/customers/{l2}", 200),
    ]
    assert (summary.counts[LEAD].created, summary.counts[LEAD].updated) == (0, 1)
    assert sandbox.state.find_customer(ds, "L2")["city"] == "London"


# ---- no stored uuid is trusted for a write ----------------------------------------------------


def test_a_customer_made_again_behind_our_back_is_patched_under_its_new_uuid(
    sandbox, ds, client, warehouse_path
):
    old = customer_uuid(sandbox, ds, "L2")
    api(sandbox, "DELETE", f"/v1/customers/{old}")
    again = client.create_customer({"data_source_uuid": ds, "external_id": "L2", "name": "Beta Ltd"})
    with duckdb.connect(str(warehouse_path)) as warehouse:
        warehouse.execute(
            "UPDATE leads SET email = 'new@beta.example', updated_at = TIMESTAMP '2025-06-01' "
            "WHERE lead_id = 'L2'"
        )
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    assert ("PATCH", f"/v1/customers/{again['uuid']}", 200) in writes_since(sandbox, before)
    assert old not in " ".join(r.path for r in sandbox.requests if r.seq > before)
    assert summary.counts[LEAD].updated == 1
    assert sandbox.state.find_customer(ds, "L2")["email"] == "new@beta.example"


def test_a_lead_chartmogul_merged_into_another_customer_gets_only_its_dates(
    sandbox, ds, client, warehouse_path
):
    stripe = sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"]
    paying = sandbox.state.create_customer(
        data_source_uuid=stripe, external_id="cus_9", name="Gamma (billing)"
    )
    merged = httpx.post(
        sandbox.url + "/_sandbox/merges",
        json={
            "from": {"data_source_uuid": ds, "external_id": "L3"},
            "into": {"customer_uuid": paying["uuid"]},
        },
    ).json()
    with duckdb.connect(str(warehouse_path)) as warehouse:
        warehouse.execute(
            "UPDATE leads SET company_name = 'Gamma Renamed', "
            "lead_created_at = TIMESTAMP '2025-03-01 08:00', updated_at = TIMESTAMP '2025-06-01' "
            "WHERE lead_id = 'L3'"
        )
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    assert writes_since(sandbox, before) == [("PATCH", f"/v1/customers/{merged['uuid']}", 200)]
    assert summary.counts[LEAD].updated == 1
    customer = sandbox.state.find_customer(ds, "L3")
    assert customer["name"] == "Gamma (billing)"  # the merged customer's profile is not the lead's
    assert customer["lead_created_at"].startswith("2025-03-01T08:00")
    # the reconciliation reports the merge, and into what
    [reported] = [
        d for d in compare_now(warehouse_path, client, ds).differences if d.kind is DifferenceKind.MERGED
    ]
    assert (reported.entity, reported.external_id) == (LEAD, "L3")
    assert reported.chartmogul_value.startswith(paying["uuid"]) and "cus_9" in reported.chartmogul_value


def test_new_trials_name_their_plan_by_the_uuid_chartmogul_holds_now(sandbox, ds, client, warehouse_path):
    old = next(p for p in sandbox.state.plans(ds) if p["external_id"] == "P1")
    api(sandbox, "DELETE", f"/v1/plans/{old['uuid']}")
    again = client.create_plan(
        {
            "data_source_uuid": ds,
            "external_id": "P1",
            "name": "Pro monthly",
            "interval_count": 1,
            "interval_unit": "month",
        }
    )
    with duckdb.connect(str(warehouse_path)) as warehouse:
        warehouse.execute(
            "INSERT INTO trials VALUES ('T6', 'L4', 'P1', NULL, TIMESTAMP '2025-03-08', "
            "TIMESTAMP '2025-03-22', 0, 'USD', 1, TIMESTAMP '2025-06-01')"
        )

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    assert summary.counts[TRIAL].created == 1
    assert invoice(sandbox, ds, "T6")["line_items"][0]["plan_uuid"] == again["uuid"]


# ---- resend repairs exactly, per object and in bulk -------------------------------------------


def drift_everything(sandbox, ds) -> None:
    """Customers, plans and invoices changed behind mogulflow's back: missing and different of each."""
    api(sandbox, "DELETE", f"/v1/customers/{customer_uuid(sandbox, ds, 'L2')}")  # L2 and T2 go
    api(
        sandbox,
        "PATCH",
        f"/v1/customers/{customer_uuid(sandbox, ds, 'L1')}",
        {"lead_created_at": "2024-12-31"},
    )
    p1 = next(p for p in sandbox.state.plans(ds) if p["external_id"] == "P1")
    api(sandbox, "PATCH", f"/v1/plans/{p1['uuid']}", {"name": "Renamed by hand"})
    api(sandbox, "DELETE", f"/v1/invoices/{invoice(sandbox, ds, 'T3')['uuid']}")
    reimport_by_hand(sandbox, ds, "T1", quantity=9)


@pytest.mark.parametrize("path", ["per object", "bulk"])
def test_resend_and_the_next_sync_leave_no_missing_and_no_different_row(
    sandbox, ds, client, warehouse_path, monkeypatch, path
):
    if path == "bulk":  # every create through JSON imports
        monkeypatch.setenv(load_bulk.BULK_THRESHOLD_ENV, "1")
        monkeypatch.setattr(load_bulk, "BULK_POLL_SECONDS", 0.05)
    drift_everything(sandbox, ds)
    report = reconcile_run(warehouse_path, client, run_id="reconcile_1", resend=True)
    assert {str(k): v for k, v in report.differences.items() if v} == {"missing": 3, "different": 3}
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", **QUIET_WINDOW, **LENIENT)

    assert compare_now(warehouse_path, client, ds).differences == ()
    assert [str(summary.counts[e].failed) for e in (LEAD, PLAN, TRIAL)] == ["0", "0", "0"]
    assert (summary.counts[LEAD].created, summary.counts[LEAD].updated) == (1, 1)  # L2 again, L1's date
    assert summary.counts[PLAN].updated == 1
    assert (summary.counts[TRIAL].created, summary.counts[TRIAL].updated) == (2, 1)  # T2, T3; T1
    if path == "per object":  # a JSON import's records show on the poll that saw them applied
        assert_counts_are_what_was_applied(summary, applied_since(sandbox, before, ds))
    else:
        assert any("json_imports" in r.path for r in sandbox.requests if r.seq > before)
        applied = applied_since(sandbox, before, ds)
        assert applied[LEAD] == {"L2": "created", "L1": "updated"}
        assert applied[TRIAL] == {"T2": "created", "T3": "created", "T1": "updated"}


def test_in_bulk_an_invoice_that_already_exists_goes_to_the_comparison_not_to_created(
    sandbox, ds, client, warehouse_path, monkeypatch
):
    monkeypatch.setenv(load_bulk.BULK_THRESHOLD_ENV, "1")
    monkeypatch.setattr(load_bulk, "BULK_POLL_SECONDS", 0.05)
    forget_state(warehouse_path, "trial", "T1")
    forget_state(warehouse_path, "trial", "T3")
    reimport_by_hand(sandbox, ds, "T1", amount_in_cents=4200)
    before = seq(sandbox)

    summary = run_sync_directly(warehouse_path, client, run_id="sync_2", full_refresh=True, **LENIENT)

    counts = summary.counts[TRIAL]
    assert (counts.created, counts.updated, counts.failed) == (0, 1, 0)  # T1 replaced, T3 as it was
    assert any("json_imports" in r.path for r in sandbox.requests if r.seq > before)
    assert invoice(sandbox, ds, "T1")["line_items"][0]["amount_in_cents"] == 0
    assert compare_now(warehouse_path, client, ds).differences == ()


# ---- a helper the other tests rely on ---------------------------------------------------------


def test_the_request_log_counts_a_reimported_invoice_as_updated():
    assert _net(["deleted", "created"]) == "updated"
    assert _net(["created"]) == "created" and _net(["updated", "updated"]) == "updated"
