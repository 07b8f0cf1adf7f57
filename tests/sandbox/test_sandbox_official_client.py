"""Conformance: the official, unmodified ``chartmogul`` Python client walks the seed guide's flows.

The guide is ChartMogul's "Importing leads and trials" (``shared/seeds/importing-leads-and-trials.txt``):
create a custom source, create a lead, update it when the trial starts, import a trial invoice,
add a trial line item, find the lead and the paying record by external id, merge them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import chartmogul
import pytest

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import trial_line_item, wait_until


@pytest.fixture
def config(sandbox: SandboxServer) -> chartmogul.Config:
    """A client configuration pointed at the sandbox (the client reads ``config.uri`` per request)."""
    configuration = chartmogul.Config("test-key", max_retries=0)
    configuration.uri = sandbox.url + "/v1"
    return configuration


@pytest.fixture
def leads_source(config: chartmogul.Config) -> chartmogul.DataSource:
    return chartmogul.DataSource.create(config, data={"name": "Leads"}).get()


@pytest.fixture
def jellytech(config: chartmogul.Config, leads_source: chartmogul.DataSource) -> chartmogul.Customer:
    data = {
        "data_source_uuid": leads_source.uuid,
        "external_id": "cus_0001",
        "name": "Jellytech",
        "country": "US",
        "lead_created_at": "2025-01-05",
    }
    return chartmogul.Customer.create(config, data=data).get()


@pytest.fixture
def monthly_plan(config: chartmogul.Config, leads_source: chartmogul.DataSource) -> chartmogul.Plan:
    data = {
        "data_source_uuid": leads_source.uuid,
        "name": "Monthly",
        "interval_count": 1,
        "interval_unit": "month",
        "external_id": "plan_monthly",
    }
    return chartmogul.Plan.create(config, data=data).get()


def test_ping_answers_pong(config: chartmogul.Config) -> None:
    assert chartmogul.Ping.ping(config).get().data == "pong!"


def test_create_data_source_gives_a_custom_source(leads_source: chartmogul.DataSource) -> None:
    assert leads_source.uuid.startswith("ds_")
    assert leads_source.system == "Custom"


def test_list_data_sources_by_name(config: chartmogul.Config, leads_source: chartmogul.DataSource) -> None:
    found = chartmogul.DataSource.all(config, name="Leads").get()

    assert [source.uuid for source in found.data_sources] == [leads_source.uuid]


def test_create_customer_with_lead_date_parses_in_the_client(jellytech: chartmogul.Customer) -> None:
    assert jellytech.uuid.startswith("cus_")
    assert jellytech.lead_created_at == datetime(2025, 1, 5, tzinfo=UTC)
    assert jellytech.status == "New Lead"


def test_create_customer_with_lead_and_trial_dates(
    config: chartmogul.Config, leads_source: chartmogul.DataSource
) -> None:
    data = {
        "data_source_uuid": leads_source.uuid,
        "external_id": "cus_0002",
        "name": "Jellytech",
        "country": "US",
        "city": "New York",
        "lead_created_at": "2025-10-14",
        "free_trial_started_at": "2025-11-01",
    }

    customer = chartmogul.Customer.create(config, data=data).get()

    assert customer.free_trial_started_at == datetime(2025, 11, 1, tzinfo=UTC)


def test_update_sends_put_and_sets_the_trial_start(
    config: chartmogul.Config, sandbox: SandboxServer, jellytech: chartmogul.Customer
) -> None:
    updated = chartmogul.Customer.update(
        config, uuid=jellytech.uuid, data={"free_trial_started_at": "2025-02-10 00:00:00"}
    ).get()

    assert updated.free_trial_started_at == datetime(2025, 2, 10, tzinfo=UTC)
    assert sandbox.requests[-1].method == "PUT"


def test_modify_sends_patch_and_sets_both_dates(
    config: chartmogul.Config, sandbox: SandboxServer, jellytech: chartmogul.Customer
) -> None:
    data = {"lead_created_at": "2025-01-01 00:00:00", "free_trial_started_at": "2025-06-13 15:45:13"}

    modified = chartmogul.Customer.modify(config, uuid=jellytech.uuid, data=data).get()

    assert modified.lead_created_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert modified.free_trial_started_at == datetime(2025, 6, 13, 15, 45, 13, tzinfo=UTC)
    assert sandbox.requests[-1].method == "PATCH"


def test_list_by_data_source_and_external_id_finds_the_lead(
    config: chartmogul.Config, leads_source: chartmogul.DataSource, jellytech: chartmogul.Customer
) -> None:
    found = chartmogul.Customer.all(config, data_source_uuid=leads_source.uuid, external_id="cus_0001").get()

    assert [customer.uuid for customer in found.entries] == [jellytech.uuid]
    assert found.has_more is False


def test_search_by_email(config: chartmogul.Config, leads_source: chartmogul.DataSource) -> None:
    data = {"data_source_uuid": leads_source.uuid, "external_id": "x", "name": "X", "email": "x@example.com"}
    chartmogul.Customer.create(config, data=data).get()

    found = chartmogul.Customer.search(config, email="x@example.com").get()

    assert [customer.external_id for customer in found.entries] == ["x"]


def test_duplicate_customer_raises_the_already_exists_error(
    config: chartmogul.Config, leads_source: chartmogul.DataSource, jellytech: chartmogul.Customer
) -> None:
    data = {"data_source_uuid": leads_source.uuid, "external_id": "cus_0001", "name": "Jellytech"}

    with pytest.raises(chartmogul.APIError, match="already exists in our system"):
        chartmogul.Customer.create(config, data=data).get()


def test_import_invoice_with_trial_line_item(
    config: chartmogul.Config, jellytech: chartmogul.Customer, monthly_plan: chartmogul.Plan
) -> None:
    invoice = {
        "external_id": "inv_trial_001",
        "date": "2025-02-10 00:00:00",
        "currency": "USD",
        "due_date": "2025-02-10 00:00:00",
        "line_items": [trial_line_item(monthly_plan.uuid, "trial_001")],
    }

    imported = chartmogul.Invoice.create(config, uuid=jellytech.uuid, data={"invoices": [invoice]}).get()

    (stored,) = imported.invoices
    assert stored.uuid.startswith("inv_")
    assert stored.line_items[0].type == "trial"
    assert stored.line_items[0].amount_in_cents == 0


def test_add_trial_line_item_to_an_existing_invoice(
    config: chartmogul.Config, jellytech: chartmogul.Customer, monthly_plan: chartmogul.Plan
) -> None:
    one_time = {"type": "one_time", "amount_in_cents": 500, "quantity": 1, "description": "setup"}
    invoice = {"external_id": "inv-1", "date": "2025-02-10", "currency": "USD", "line_items": [one_time]}
    (stored,) = (
        chartmogul.Invoice.create(config, uuid=jellytech.uuid, data={"invoices": [invoice]}).get().invoices
    )

    line_item = chartmogul.LineItem.create(
        config, uuid=stored.uuid, data=trial_line_item(monthly_plan.uuid, "trial_001")
    ).get()

    assert line_item.uuid.startswith("li_")
    retrieved = chartmogul.Invoice.retrieve(config, uuid=stored.uuid).get()
    assert [item.type for item in retrieved.line_items] == ["one_time", "trial"]


def test_list_invoices_of_a_customer(
    config: chartmogul.Config, jellytech: chartmogul.Customer, monthly_plan: chartmogul.Plan
) -> None:
    invoice = {
        "external_id": "inv_trial_001",
        "date": "2025-02-10",
        "currency": "USD",
        "line_items": [trial_line_item(monthly_plan.uuid)],
    }
    chartmogul.Invoice.create(config, uuid=jellytech.uuid, data={"invoices": [invoice]}).get()

    listed = chartmogul.Invoice.all(config, uuid=jellytech.uuid).get()

    assert listed.customer_uuid == jellytech.uuid
    assert [found.external_id for found in listed.invoices] == ["inv_trial_001"]


def test_list_plans_by_data_source(
    config: chartmogul.Config, leads_source: chartmogul.DataSource, monthly_plan: chartmogul.Plan
) -> None:
    listed = chartmogul.Plan.all(config, data_source_uuid=leads_source.uuid).get()

    assert [plan.uuid for plan in listed.plans] == [monthly_plan.uuid]


def test_merge_lead_into_paying_customer(
    config: chartmogul.Config, sandbox: SandboxServer, jellytech: chartmogul.Customer
) -> None:
    stripe = sandbox.state.create_data_source("Stripe", system="Stripe")
    sandbox.state.create_customer(
        data_source_uuid=stripe["uuid"], external_id="cus_9TSLDKbqG2iKgK", status="Active"
    )
    paying = chartmogul.Customer.all(config, external_id="cus_9TSLDKbqG2iKgK").get().entries[0]

    answer = chartmogul.Customer.merge(
        config, data={"from": {"customer_uuid": jellytech.uuid}, "into": {"customer_uuid": paying.uuid}}
    ).get()

    assert answer is None  # 202: the client returns nothing
    wait_until(
        lambda: chartmogul.Customer.all(config, external_id="cus_0001").get().entries[0].uuid == paying.uuid
    )
    merged = chartmogul.Customer.retrieve(config, uuid=paying.uuid).get()
    assert merged.external_ids == ["cus_9TSLDKbqG2iKgK", "cus_0001"]
    assert merged.lead_created_at == datetime(2025, 1, 5, tzinfo=UTC)


def test_json_import_through_the_client(
    config: chartmogul.Config, leads_source: chartmogul.DataSource
) -> None:
    payload = {"external_id": "bulk-1", "customers": [{"external_id": "lead-9", "name": "Nine"}]}

    created = chartmogul.JsonImport.create(config, data_source_uuid=leads_source.uuid, data=payload).get()

    assert created.status == "queued"

    def import_completed() -> bool:
        found = chartmogul.JsonImport.retrieve(config, data_source_uuid=leads_source.uuid, id="bulk-1").get()
        return bool(found.status == "completed")

    wait_until(import_completed)
