"""Merging converted leads, step by step without Airflow: a DuckDB warehouse and the sandbox over HTTP.

Each test arranges leads that mogulflow synced (a customer in the "Leads" data source plus its
sync-state entry), paying customers that a "billing integration" creates in a Stripe data source
(some only after a delay, from a timer thread), and `conversions` rows; then runs the steps in the
DAG's order (`run_merge`) and asserts on the sandbox's customers and the warehouse's tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import pytest
from repo_paths import REPO

from mogulflow.chartmogul.client import AsyncChartMogulClient, ChartMogulClient
from mogulflow.merge.conversions import extract_and_validate_conversions, keys_to_look_up
from mogulflow.merge.merges import merge_conversions
from mogulflow.merge.paying_customers import (
    BillingKey,
    LookupReport,
    PayingCustomer,
    wait_for_paying_customers,
)
from mogulflow.record.account import summarize_run
from mogulflow.record.rejects import write_rejects
from mogulflow.values.entities import Entity
from mogulflow.values.json_form import from_json, to_json
from mogulflow.values.pipelines import CONVERSIONS_ACCOUNT
from mogulflow.values.run_settings import MergeSettings, resolve_merge_settings
from mogulflow.values.run_summary import RunSummary
from mogulflow.values.step_reports import ExtractReport, LoadReport, StagedExtract
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus, load_state, save_state

STATUS_SYNCED, STATUS_FAILED, STATUS_MERGED = SyncStatus.SYNCED, SyncStatus.FAILED, SyncStatus.MERGED

API_KEY = "test-key-merge"
DAG_ID = "chartmogul_merge_converted_leads"
CONVERTED_AT = datetime(2025, 4, 1, 12, 0)


# ---- arrangement ---------------------------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path) -> Iterator[Warehouse]:
    warehouse = Warehouse.open_duckdb(str(tmp_path / "warehouse.duckdb"))
    warehouse.execute_script((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
    ensure_tables(warehouse)
    yield warehouse
    warehouse.close()


@pytest.fixture
def client(sandbox) -> Iterator[ChartMogulClient]:
    with ChartMogulClient(base_url=sandbox.url, api_key=API_KEY) as client:
        yield client


@pytest.fixture
def leads_ds(sandbox) -> str:
    return sandbox.state.create_data_source("Leads")["uuid"]


@pytest.fixture
def stripe_ds(sandbox) -> str:
    return sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"]


def sync_lead(warehouse: Warehouse, client: ChartMogulClient, leads_ds: str, lead_id: str) -> str:
    """What chartmogul_leads_trials leaves behind for one lead: its customer and its state entry."""
    customer = client.create_customer(
        {"data_source_uuid": leads_ds, "external_id": lead_id, "name": f"Lead {lead_id}"}
    )
    payload = {"name": f"Lead {lead_id}"}
    save_state(
        warehouse,
        [
            StateEntry(
                entity=Entity.LEAD,
                data_source_uuid=leads_ds,
                external_id=lead_id,
                chartmogul_uuid=customer["uuid"],
                content_hash="hash-" + lead_id,
                payload=payload,
                status=STATUS_SYNCED,
                synced_at=datetime.now(UTC),
                run_id="leads-run",
            )
        ],
    )
    return customer["uuid"]


def add_conversion(
    warehouse: Warehouse, lead_id: str, billing_ds: str, billing_id: str, converted_at=CONVERTED_AT
):
    warehouse.insert_rows(
        "conversions",
        ("lead_id", "billing_data_source_uuid", "billing_customer_external_id", "converted_at"),
        [(lead_id, billing_ds, billing_id, converted_at)],
    )


def pay_after_lookups(sandbox, billing_ds: str, billing_id: str, lookups: int = 1) -> Callable[[], bool]:
    """The billing integration, which creates the paying customer once mogulflow has looked for it in
    vain `lookups` times; each call catches up, and says whether the customer exists. Called between
    two lookups (`run_merge`'s `between_lookups`), the wait is the same whatever the machine's speed."""

    def lookups_so_far() -> int:
        return sum(
            1
            for r in sandbox.requests
            if r.method == "GET" and r.path == "/v1/customers" and f"external_id={billing_id}" in r.query
        )

    def catch_up() -> bool:
        if sandbox.state.find_customer(billing_ds, billing_id):
            return True
        if lookups_so_far() < lookups:
            return False
        sandbox.state.create_customer(data_source_uuid=billing_ds, external_id=billing_id)
        return True

    return catch_up


def run_merge(
    warehouse: Warehouse,
    client: ChartMogulClient,
    sandbox,
    leads_ds: str | None,
    *,
    run_id: str = "run-1",
    interval: float = 0.1,
    timeout: float = 0.0,
    between_lookups: Sequence[Callable[[], object]] = (),
    **params: object,
) -> tuple[RunSummary, LoadReport]:
    """The DAG's steps in its order, with the wait done in line (as dag.test runs the trigger).

    `between_lookups`: what happens elsewhere while the wait sleeps. Returns the run's account and
    the merge step's report.
    """
    settings = resolve_merge_settings(
        {"full_refresh": True, "lookup_interval_seconds": interval, "lookup_timeout_seconds": timeout}
        | params,
        run_id=run_id,
        dag_id=DAG_ID,
        data_interval_start=None,
        data_interval_end=None,
    )
    report = extract_and_validate_conversions(warehouse, settings.run, leads_ds)
    write_rejects(warehouse, settings.run, report, leads_ds)
    keys = keys_to_look_up(warehouse, leads_ds, report)

    async def sleep(seconds: float) -> None:
        for happening in between_lookups:
            happening()
        await asyncio.sleep(seconds)

    async def wait() -> LookupReport:
        async with AsyncChartMogulClient(base_url=sandbox.url, api_key=API_KEY) as aclient:
            return await wait_for_paying_customers(
                aclient, keys, interval=interval, deadline=time.time() + timeout, sleep=sleep
            )

    lookup = asyncio.run(wait()) if keys else LookupReport()
    merged = merge_conversions(warehouse, client, settings.run, leads_ds, report, lookup)
    account = summarize_run(settings.run, CONVERSIONS_ACCOUNT, report, {Entity.CONVERSION: merged})
    return account.summary, merged


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Merges are applied asynchronously (as ChartMogul does): poll the sandbox for a while.

    They are due half a second after they were accepted: the timeout only ends a wait that would
    never end, so it is far longer than that, for a machine that is busy with other things.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def merged_into(sandbox, leads_ds: str, lead_id: str, billing_ds: str, billing_id: str) -> bool:
    lead = sandbox.state.find_customer(leads_ds, lead_id)
    paying = sandbox.state.find_customer(billing_ds, billing_id)
    return lead is not None and paying is not None and lead["uuid"] == paying["uuid"]


def merge_requests(sandbox) -> list[dict]:
    return [m for m in sandbox.state.merges() if m.get("kind", "merge") == "merge"]


# ---- behaviour -----------------------------------------------------------------------------------


def test_lead_is_merged_into_the_paying_customer_the_billing_integration_created(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    paying = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    summary, _ = run_merge(warehouse, client, sandbox, leads_ds)

    counts = summary.counts[Entity.CONVERSION]
    assert (counts.extracted, counts.created, counts.unchanged, counts.failed) == (1, 1, 0, 0)
    assert summary.outcome == "success"
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L1", stripe_ds, "cus_1"))
    conversion = load_state(warehouse, Entity.CONVERSION, leads_ds)["L1"]
    assert (conversion.status, conversion.chartmogul_uuid) == (STATUS_MERGED, paying["uuid"])


def test_merge_re_points_the_lead_state_at_the_surviving_customer_keeping_its_hash(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    paying = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    run_merge(warehouse, client, sandbox, leads_ds)

    lead = load_state(warehouse, Entity.LEAD, leads_ds)["L1"]
    assert (lead.status, lead.chartmogul_uuid) == (STATUS_MERGED, paying["uuid"])
    assert lead.content_hash == "hash-L1"
    assert lead.payload == {"name": "Lead L1"}


def test_paying_customers_that_appear_during_the_wait_are_merged(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    for lead_id, billing_id in (("L1", "cus_1"), ("L2", "cus_2"), ("L3", "cus_3")):
        sync_lead(warehouse, client, leads_ds, lead_id)
        add_conversion(warehouse, lead_id, stripe_ds, billing_id)
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    billing = [
        pay_after_lookups(sandbox, stripe_ds, "cus_2", 1),
        pay_after_lookups(sandbox, stripe_ds, "cus_3", 2),
    ]

    summary, merged = run_merge(
        warehouse, client, sandbox, leads_ds, interval=0.2, timeout=60, between_lookups=billing
    )

    assert summary.counts[Entity.CONVERSION].created == 3
    assert merged.lookup.polls == 3  # cus_3 was missed twice, found at the third lookup
    for lead_id, billing_id in (("L1", "cus_1"), ("L2", "cus_2"), ("L3", "cus_3")):
        assert eventually(
            lambda lead=lead_id, bill=billing_id: merged_into(sandbox, leads_ds, lead, stripe_ds, bill)
        )


def test_paying_customer_that_never_appears_fails_only_its_conversion(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    for lead_id, billing_id in (("L1", "cus_1"), ("L2", "cus_never")):
        sync_lead(warehouse, client, leads_ds, lead_id)
        add_conversion(warehouse, lead_id, stripe_ds, billing_id)
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")

    started = time.monotonic()
    summary, merged = run_merge(warehouse, client, sandbox, leads_ds, interval=0.2, timeout=1.0)

    assert time.monotonic() - started >= 1.0  # it did wait the whole timeout
    counts = summary.counts[Entity.CONVERSION]
    assert (counts.extracted, counts.created, counts.failed) == (2, 1, 1)
    assert summary.outcome == "failed"
    assert "not found in time" in summary.message
    assert merged.errors[0].external_id == "L2"
    assert "cus_never" in merged.errors[0].message
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L1", stripe_ds, "cus_1"))
    state = load_state(warehouse, Entity.CONVERSION, leads_ds)
    assert state["L2"].status == STATUS_FAILED
    assert load_state(warehouse, Entity.LEAD, leads_ds)["L2"].status == STATUS_SYNCED


def test_failed_conversion_outside_the_window_is_retried_by_the_next_run(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    add_conversion(warehouse, "L1", stripe_ds, "cus_late", converted_at=datetime(2025, 4, 1, 12))
    window = {"full_refresh": False, "start": "2025-04-01T00:00:00Z", "end": "2025-04-02T00:00:00Z"}
    first, _ = run_merge(warehouse, client, sandbox, leads_ds, **window)
    assert first.counts[Entity.CONVERSION].failed == 1

    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_late")
    next_day = {"full_refresh": False, "start": "2025-04-02T00:00:00Z", "end": "2025-04-03T00:00:00Z"}
    second, _ = run_merge(warehouse, client, sandbox, leads_ds, run_id="run-2", **next_day)

    assert second.counts[Entity.CONVERSION].created == 1
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L1", stripe_ds, "cus_late"))


def test_re_runs_merge_nothing_twice(warehouse, client, sandbox, leads_ds, stripe_ds):
    sync_lead(warehouse, client, leads_ds, "L1")
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")
    run_merge(warehouse, client, sandbox, leads_ds)
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L1", stripe_ds, "cus_1"))

    again, _ = run_merge(warehouse, client, sandbox, leads_ds, run_id="run-2")

    counts = again.counts[Entity.CONVERSION]
    assert (counts.created, counts.unchanged, counts.failed) == (0, 1, 0)
    assert len(merge_requests(sandbox)) == 1


def test_merge_done_before_but_not_recorded_is_recognised_from_the_api(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    lead_uuid = sync_lead(warehouse, client, leads_ds, "L1")
    paying = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    client.merge_customers(lead_uuid, paying["uuid"])  # e.g. by hand, or a run whose checkpoint was lost
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L1", stripe_ds, "cus_1"))
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    summary, _ = run_merge(warehouse, client, sandbox, leads_ds)

    assert summary.counts[Entity.CONVERSION].unchanged == 1
    assert len(merge_requests(sandbox)) == 1
    assert load_state(warehouse, Entity.LEAD, leads_ds)["L1"].chartmogul_uuid == paying["uuid"]


def test_conversion_of_a_lead_never_synced_is_rejected_and_read_again_next_run(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_9")
    add_conversion(warehouse, "L9", stripe_ds, "cus_9", converted_at=datetime(2025, 4, 1, 12))
    window = {"full_refresh": False, "start": "2025-04-01T00:00:00Z", "end": "2025-04-02T00:00:00Z"}
    first, _ = run_merge(warehouse, client, sandbox, leads_ds, **window)
    assert first.counts[Entity.CONVERSION].rejected == 1
    assert first.outcome == "success_with_rejects"
    [(reason,)] = warehouse.query_frame(
        "SELECT reason FROM mogulflow_rejects WHERE source_id = 'L9'"
    ).itertuples(index=False)
    assert "lead_id" in reason

    sync_lead(warehouse, client, leads_ds, "L9")  # the leads DAG ran in between
    next_day = {"full_refresh": False, "start": "2025-04-02T00:00:00Z", "end": "2025-04-03T00:00:00Z"}
    second, _ = run_merge(warehouse, client, sandbox, leads_ds, run_id="run-2", **next_day)

    assert second.counts[Entity.CONVERSION].created == 1
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L9", stripe_ds, "cus_9"))


def test_conversion_still_waiting_for_its_lead_stays_out_of_later_runs(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_9")
    add_conversion(warehouse, "L9", stripe_ds, "cus_9", converted_at=datetime(2025, 4, 1, 12))
    window = {"full_refresh": False, "start": "2025-04-01T00:00:00Z", "end": "2025-04-02T00:00:00Z"}
    run_merge(warehouse, client, sandbox, leads_ds, **window)

    next_day = {"full_refresh": False, "start": "2025-04-02T00:00:00Z", "end": "2025-04-03T00:00:00Z"}
    second, _ = run_merge(warehouse, client, sandbox, leads_ds, run_id="run-2", **next_day)

    assert second.counts[Entity.CONVERSION].extracted == 0  # the lead is still unknown: not re-counted
    assert second.outcome == "success"


def test_conversion_with_missing_billing_id_is_rejected_without_a_lookup(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    add_conversion(warehouse, "L1", stripe_ds, "  ")

    summary, _ = run_merge(warehouse, client, sandbox, leads_ds)

    counts = summary.counts[Entity.CONVERSION]
    assert (counts.extracted, counts.rejected, counts.failed) == (1, 1, 0)
    assert "L1" not in load_state(
        warehouse, Entity.CONVERSION, leads_ds
    )  # not re-read: the row must be fixed


def test_lead_already_merged_into_another_customer_is_not_merged_again(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_other")
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")
    run_merge(warehouse, client, sandbox, leads_ds)
    warehouse.execute("UPDATE conversions SET billing_customer_external_id = 'cus_other'")

    summary, merged = run_merge(warehouse, client, sandbox, leads_ds, run_id="run-2")

    assert summary.counts[Entity.CONVERSION].failed == 1
    assert "unmerge" in merged.errors[0].message
    assert len(merge_requests(sandbox)) == 1


def test_trial_invoices_imported_after_the_merge_land_on_the_surviving_customer(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    from builders import frame, trial

    from mogulflow.load.trial_invoices import load_trial_invoices
    from mogulflow.plan.sync_plan import plan_sync
    from mogulflow.transform.payloads import build_trial_invoices
    from mogulflow.validate.validator import validate_trials
    from mogulflow.warehouse.sync_state import uuids_by_external_id

    sync_lead(warehouse, client, leads_ds, "L1")
    plan = client.create_plan(
        {
            "data_source_uuid": leads_ds,
            "external_id": "P1",
            "name": "Pro",
            "interval_count": 1,
            "interval_unit": "month",
        }
    )
    paying = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")
    run_merge(warehouse, client, sandbox, leads_ds)
    assert eventually(lambda: merged_into(sandbox, leads_ds, "L1", stripe_ds, "cus_1"))

    # what chartmogul_leads_trials' import_trial_invoices does with the state it finds
    valid = validate_trials(
        frame(trial("T1")), now=datetime.now(UTC), known_lead_ids={"L1"}, known_plan_ids={"P1"}
    )
    result = load_trial_invoices(
        client,
        plan_sync(Entity.TRIAL, build_trial_invoices(valid.valid), {}),
        data_source_uuid=leads_ds,
        run_id="leads-run-2",
        customer_uuid_by_lead=uuids_by_external_id(load_state(warehouse, Entity.LEAD, leads_ds)),
        plan_uuid_by_plan={"P1": plan["uuid"]},
        checkpoint=lambda entries: None,
    )

    assert result.created == 1, result.errors
    [invoice] = sandbox.state.invoices(data_source_uuid=leads_ds)
    assert invoice["customer_uuid"] == paying["uuid"]


def test_missing_data_source_rejects_every_conversion(warehouse, client, sandbox, stripe_ds):
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    summary, _ = run_merge(warehouse, client, sandbox, None)

    counts = summary.counts[Entity.CONVERSION]
    assert (counts.extracted, counts.rejected) == (1, 1)


# ---- pieces --------------------------------------------------------------------------------------


def test_wait_looks_at_least_once_even_with_a_past_deadline():
    class Client:
        calls = 0

        async def find_customer(self, data_source_uuid, external_id):
            Client.calls += 1
            return {
                "uuid": "cus-uuid",
                "data_source_uuids": [data_source_uuid],
                "external_ids": [external_id],
            }

    report = asyncio.run(
        wait_for_paying_customers(Client(), [BillingKey("ds", "c1")], interval=60, deadline=0)
    )

    assert Client.calls == 1
    assert [c.uuid for c in report.found] == ["cus-uuid"]


def test_wait_keeps_the_last_lookup_error_of_a_missing_customer():
    class Client:
        async def find_customer(self, data_source_uuid, external_id):
            raise RuntimeError("HTTP 503 after 5 attempts")

    now = 0.0  # the wait's own clock: it moves only when the wait sleeps

    async def sleep(seconds: float) -> None:
        nonlocal now
        now += seconds

    report = asyncio.run(
        wait_for_paying_customers(
            Client(), [BillingKey("ds", "c1")], interval=0.25, deadline=1.0, clock=lambda: now, sleep=sleep
        )
    )

    assert report.missing == {BillingKey("ds", "c1"): "HTTP 503 after 5 attempts"}
    assert report.polls == 5  # at 0, 0.25, 0.5, 0.75 and 1 s


def test_lookup_report_survives_xcom():
    report = LookupReport(
        found=(PayingCustomer(BillingKey("ds", "c1"), "u1", ("ds", "leads"), ("c1", "L1")),),
        missing={BillingKey("ds", "c2"): "boom"},
        polls=3,
        waited_seconds=12.5,
    )
    assert from_json(LookupReport, to_json(report)) == report


def test_merge_settings_take_the_window_rules_of_the_leads_dag_and_the_wait_params():
    settings = resolve_merge_settings(
        {"start": "2025-04-01T00:00:00Z", "end": "2025-04-02T00:00:00Z", "lookup_interval_seconds": 5},
        run_id="r",
        dag_id=DAG_ID,
        data_interval_start=None,
        data_interval_end=None,
    )
    assert settings.run.window.start == datetime(2025, 4, 1, tzinfo=UTC)
    assert (settings.lookup_interval_seconds, settings.lookup_timeout_seconds) == (5, 1200)
    assert settings.run.data_source_name == "Leads"
    assert from_json(MergeSettings, to_json(settings)) == settings


@pytest.mark.parametrize("params", [{"lookup_interval_seconds": 0}, {"lookup_timeout_seconds": -1}])
def test_merge_settings_refuse_a_wait_that_cannot_work(params):
    with pytest.raises(ValueError, match="lookup_"):
        resolve_merge_settings(
            params, run_id="r", dag_id=DAG_ID, data_interval_start=None, data_interval_end=None
        )


def test_run_whose_merge_step_never_ran_counts_its_valid_conversions_as_failed():
    settings = resolve_merge_settings(
        {"full_refresh": True}, run_id="r", dag_id=DAG_ID, data_interval_start=None, data_interval_end=None
    )
    extract = ExtractReport(
        {
            Entity.CONVERSION: StagedExtract(
                Entity.CONVERSION, 4, 3, 1, {"x": 1}, "valid.parquet", "rejects.parquet"
            )
        }
    )

    summary = summarize_run(
        settings.run,
        CONVERSIONS_ACCOUNT,
        extract,
        {Entity.CONVERSION: None},
        task_failures=["task merge_customers did not finish"],
    ).summary

    counts = summary.counts[Entity.CONVERSION]
    assert (counts.extracted, counts.rejected, counts.failed, counts.accounted) == (4, 1, 3, 4)
    assert summary.outcome == "failed"


def test_trigger_rebuilds_from_what_it_serializes():
    import importlib

    from mogulflow.airflow.paying_customers_wait import PayingCustomersTrigger

    trigger = PayingCustomersTrigger(
        keys=[to_json(BillingKey("ds", "c1"))],
        found=[to_json(PayingCustomer(BillingKey("ds", "c0"), "u0"))],
        polls=1,
        started_at=1.0,
        deadline=1201.0,
        interval=60.0,
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")

    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)

    assert rebuilt.serialize() == (path, kwargs)
    assert "password" not in repr(kwargs) and "api_key" not in repr(kwargs)


# ---- merges ChartMogul made on its own (issue 17) -------------------------------------------------


def test_a_lead_chartmogul_merged_into_its_paying_customer_counts_as_done(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    paying = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    sandbox.state.merge_now(
        {
            "from": {"data_source_uuid": leads_ds, "external_id": "L1"},
            "into": {"customer_uuid": paying["uuid"]},
        }
    )
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    summary, _ = run_merge(warehouse, client, sandbox, leads_ds)

    counts = summary.counts[Entity.CONVERSION]
    assert (counts.created, counts.unchanged, counts.failed) == (0, 1, 0)
    assert merge_requests(sandbox) == [m for m in sandbox.state.merges() if m["requested_by"] == "chartmogul"]
    entry = load_state(warehouse, Entity.CONVERSION, leads_ds)["L1"]
    assert entry.status is STATUS_MERGED and entry.chartmogul_uuid == paying["uuid"]
    assert entry.payload["merged_into"].startswith(paying["uuid"])


def test_a_lead_chartmogul_merged_into_another_customer_fails_naming_both(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    sync_lead(warehouse, client, leads_ds, "L1")
    sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    other = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_other")
    # ChartMogul's automatic merging (matching domains) put the lead into another company's customer
    sandbox.state.merge_now(
        {
            "from": {"data_source_uuid": leads_ds, "external_id": "L1"},
            "into": {"customer_uuid": other["uuid"]},
        }
    )
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    summary, merged = run_merge(warehouse, client, sandbox, leads_ds)

    assert summary.counts[Entity.CONVERSION].failed == 1
    [error] = merged.errors
    assert "merged in ChartMogul" in error.message and other["uuid"] in error.message
    assert "'cus_1'" in error.message  # the paying customer the conversion names
    assert [m for m in sandbox.state.merges() if m["requested_by"] == "api"] == []  # nothing merged again
    entry = load_state(warehouse, Entity.CONVERSION, leads_ds)["L1"]
    assert entry.status is STATUS_FAILED and entry.payload["merged_into"].startswith(other["uuid"])


def test_the_merge_acts_on_the_leads_customer_now_not_on_the_remembered_uuid(
    warehouse, client, sandbox, leads_ds, stripe_ds
):
    remembered = sync_lead(warehouse, client, leads_ds, "L1")
    # someone deleted the lead's customer and made it again by hand: another uuid
    sandbox.state.delete_customer(remembered)
    again = sandbox.state.create_customer(data_source_uuid=leads_ds, external_id="L1", status="New Lead")
    paying = sandbox.state.create_customer(data_source_uuid=stripe_ds, external_id="cus_1")
    add_conversion(warehouse, "L1", stripe_ds, "cus_1")

    summary, _ = run_merge(warehouse, client, sandbox, leads_ds)

    assert summary.counts[Entity.CONVERSION].created == 1
    [merge] = merge_requests(sandbox)
    assert (merge["customer_uuid"], merge["into_uuid"]) == (again["uuid"], paying["uuid"])
