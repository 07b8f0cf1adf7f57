"""Invoice imports: the trial flow, per-invoice errors, batch modes, line items, lookups, deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_customer, create_plan, trial_invoice, trial_line_item

INVOICE_EXTERNAL_ID_TAKEN = "The external ID for this invoice already exists in our system."
LINE_ITEM_EXTERNAL_ID_TAKEN = "The external ID for this line item already exists in our system."


@pytest.fixture
def customer(api: httpx.Client, data_source_uuid: str) -> dict:
    return create_customer(api, data_source_uuid)


@pytest.fixture
def plan(api: httpx.Client, data_source_uuid: str) -> dict:
    return create_plan(api, data_source_uuid)


def import_invoices(api: httpx.Client, customer_uuid: str, *invoices: dict) -> httpx.Response:
    return api.post(f"/import/customers/{customer_uuid}/invoices", json={"invoices": list(invoices)})


def test_trial_invoice_imports_with_201_and_prefixed_uuids(
    api: httpx.Client, customer: dict, plan: dict
) -> None:
    response = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"]))

    assert response.status_code == 201
    (invoice,) = response.json()["invoices"]
    assert invoice["uuid"].startswith("inv_")
    assert invoice["errors"] == {}
    assert invoice["customer_uuid"] == customer["uuid"]
    (line_item,) = invoice["line_items"]
    assert line_item["uuid"].startswith("li_")
    assert (line_item["type"], line_item["amount_in_cents"]) == ("trial", 0)
    assert line_item["subscription_uuid"].startswith("sub_")


def test_transactions_get_prefixed_uuids(api: httpx.Client, customer: dict, plan: dict) -> None:
    payment = {
        "type": "payment",
        "date": "2025-01-01 00:00:00",
        "result": "successful",
        "external_id": "tr-1",
    }

    response = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"], transactions=[payment]))

    assert response.json()["invoices"][0]["transactions"][0]["uuid"].startswith("tr_")


def test_unknown_customer_answers_the_misleading_invoice_not_found(api: httpx.Client, plan: dict) -> None:
    response = import_invoices(api, "cus_0001", trial_invoice(plan["uuid"]))

    assert response.status_code == 404
    assert response.json() == {
        "error": "Invoice not found",
        "error_details": [{"param": "invoice", "code": "invalid", "message": "Invoice not found"}],
    }


def test_duplicate_invoice_reports_invoice_and_line_item_duplicates(
    api: httpx.Client, customer: dict, plan: dict
) -> None:
    import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"]))

    response = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"]))

    assert response.status_code == 422
    assert response.json() == {
        "invoices": [
            {
                "external_id": "inv-trial-1",
                "errors": {
                    "external_id": INVOICE_EXTERNAL_ID_TAKEN,
                    "line_items.external_id": LINE_ITEM_EXTERNAL_ID_TAKEN,
                },
            }
        ]
    }


def test_duplicate_transaction_external_id_is_has_already_been_taken(
    api: httpx.Client, customer: dict, plan: dict
) -> None:
    payment = {"type": "payment", "date": "2025-01-01", "result": "successful", "external_id": "tr-1"}
    import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"], "inv-1", transactions=[payment]))

    response = import_invoices(
        api, customer["uuid"], trial_invoice(plan["uuid"], "inv-2", transactions=[payment])
    )

    assert response.json()["invoices"][0]["errors"] == {"transactions.external_id": "has already been taken"}


def test_all_or_nothing_batch_stores_nothing_when_one_invoice_fails(
    api: httpx.Client, sandbox: SandboxServer, customer: dict, plan: dict
) -> None:
    good = trial_invoice(plan["uuid"], "inv-good")
    bad = trial_invoice(plan["uuid"], "inv-bad", currency="XYZ")

    response = import_invoices(api, customer["uuid"], good, bad)

    assert response.status_code == 422
    assert response.json()["invoices"] == [
        {"external_id": "inv-good", "errors": {}},
        {"external_id": "inv-bad", "errors": {"currency": "Currency is invalid"}},
    ]
    assert sandbox.state.invoices() == []


def test_partial_batch_stores_the_good_invoices_of_a_failing_batch() -> None:
    with (
        SandboxServer(invoice_batch_mode="partial") as server,
        httpx.Client(base_url=server.url + "/v1", auth=("k", "")) as client,
    ):
        source = client.post("/data_sources", json={"name": "Leads"}).json()["uuid"]
        customer = create_customer(client, source)
        plan = create_plan(client, source)
        good = trial_invoice(plan["uuid"], "inv-good")
        bad = trial_invoice(plan["uuid"], "inv-bad", currency="XYZ")

        response = import_invoices(client, customer["uuid"], good, bad)

        assert response.status_code == 422
        assert response.json()["invoices"][0]["uuid"].startswith("inv_")
        assert [invoice["external_id"] for invoice in server.state.invoices()] == ["inv-good"]


def test_invoice_date_in_the_future_is_refused(api: httpx.Client, customer: dict, plan: dict) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    response = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"], date=tomorrow))

    assert response.json()["invoices"][0]["errors"] == {"date": "Date is in the future"}


@pytest.mark.parametrize(
    "line_item_change, error_key",
    [
        ({"type": "freebie"}, "line_items.type"),
        ({"plan_uuid": None}, "line_items.plan_uuid"),
        ({"plan_uuid": "pl_00000000-0000-0000-0000-000000000000"}, "line_items.plan_uuid"),
        ({"subscription_external_id": None}, "line_items.subscription_external_id"),
        ({"service_period_end": "2024-12-01T00:00:00Z"}, "line_items.service_period_end"),
        ({"amount_in_cents": -1}, "line_items.amount_in_cents"),
        ({"amount_in_cents": 9.5}, "line_items.amount_in_cents"),
        ({"quantity": 0}, "line_items.quantity"),
    ],
)
def test_line_item_rule_violation_is_reported_under_its_key(
    api: httpx.Client, customer: dict, plan: dict, line_item_change: dict, error_key: str
) -> None:
    invoice = trial_invoice(plan["uuid"])
    invoice["line_items"][0].update(line_item_change)

    response = import_invoices(api, customer["uuid"], invoice)

    assert response.status_code == 422
    assert set(response.json()["invoices"][0]["errors"]) == {error_key}


def test_plan_of_another_data_source_is_refused(api: httpx.Client, customer: dict) -> None:
    other_source = api.post("/data_sources", json={"name": "Other"}).json()["uuid"]
    foreign_plan = create_plan(api, other_source)

    response = import_invoices(api, customer["uuid"], trial_invoice(foreign_plan["uuid"]))

    assert set(response.json()["invoices"][0]["errors"]) == {"line_items.plan_uuid"}


def test_one_time_line_item_needs_no_plan(api: httpx.Client, customer: dict) -> None:
    one_time = {"type": "one_time", "amount_in_cents": 4500, "quantity": 2, "description": "setup"}
    invoice = {"external_id": "inv-1", "date": "2025-01-01", "currency": "eur", "line_items": [one_time]}

    response = import_invoices(api, customer["uuid"], invoice)

    assert response.status_code == 201
    assert response.json()["invoices"][0]["currency"] == "EUR"


def test_paid_subscription_makes_the_lead_active(api: httpx.Client, customer: dict, plan: dict) -> None:
    invoice = trial_invoice(plan["uuid"])
    invoice["line_items"][0].update(type="subscription", amount_in_cents=1000)

    import_invoices(api, customer["uuid"], invoice)

    assert api.get(f"/customers/{customer['uuid']}").json()["status"] == "Active"


def test_trial_keeps_the_customer_a_lead(api: httpx.Client, customer: dict, plan: dict) -> None:
    import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"]))

    assert api.get(f"/customers/{customer['uuid']}").json()["status"] == "New Lead"


def test_customer_external_id_of_another_customer_is_refused(
    api: httpx.Client, data_source_uuid: str, customer: dict, plan: dict
) -> None:
    create_customer(api, data_source_uuid, "someone-else")
    invoice = trial_invoice(
        plan["uuid"], customer_external_id="someone-else", data_source_uuid=data_source_uuid
    )

    response = import_invoices(api, customer["uuid"], invoice)

    assert set(response.json()["invoices"][0]["errors"]) == {"customer_external_id"}


def test_add_line_item_to_an_invoice_answers_201(api: httpx.Client, customer: dict, plan: dict) -> None:
    invoice = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"])).json()["invoices"][0]

    response = api.post(
        f"/import/invoices/{invoice['uuid']}/line_items", json=trial_line_item(plan["uuid"], "li-2")
    )

    assert response.status_code == 201
    assert response.json()["uuid"].startswith("li_")
    assert len(api.get(f"/invoices/{invoice['uuid']}").json()["line_items"]) == 2


def test_add_line_item_with_taken_external_id_answers_422(
    api: httpx.Client, customer: dict, plan: dict
) -> None:
    invoice = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"])).json()["invoices"][0]

    response = api.post(
        f"/import/invoices/{invoice['uuid']}/line_items", json=trial_line_item(plan["uuid"], "li-inv-trial-1")
    )

    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"external_id"}


def test_add_line_item_to_unknown_invoice_answers_404(api: httpx.Client, plan: dict) -> None:
    response = api.post(
        "/import/invoices/inv_00000000-0000-0000-0000-000000000000/line_items",
        json=trial_line_item(plan["uuid"]),
    )

    assert response.status_code == 404


def test_customer_invoice_list_names_the_customer(api: httpx.Client, customer: dict, plan: dict) -> None:
    import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"]))

    body = api.get(f"/import/customers/{customer['uuid']}/invoices").json()

    assert body["customer_uuid"] == customer["uuid"]
    assert [invoice["external_id"] for invoice in body["invoices"]] == ["inv-trial-1"]


def test_invoice_list_finds_by_data_source_and_external_id(
    api: httpx.Client, data_source_uuid: str, customer: dict, plan: dict
) -> None:
    import_invoices(
        api, customer["uuid"], trial_invoice(plan["uuid"], "inv-1"), trial_invoice(plan["uuid"], "inv-2")
    )

    body = api.get("/invoices", params={"data_source_uuid": data_source_uuid, "external_id": "inv-2"}).json()

    assert [invoice["external_id"] for invoice in body["invoices"]] == ["inv-2"]


def test_invoice_list_pages_by_customer(api: httpx.Client, customer: dict, plan: dict) -> None:
    invoices = [trial_invoice(plan["uuid"], f"inv-{number}") for number in range(3)]
    import_invoices(api, customer["uuid"], *invoices)

    first = api.get("/invoices", params={"customer_uuid": customer["uuid"], "per_page": 2}).json()
    second = api.get(
        "/invoices", params={"customer_uuid": customer["uuid"], "cursor": first["cursor"]}
    ).json()

    assert [i["external_id"] for i in first["invoices"] + second["invoices"]] == ["inv-0", "inv-1", "inv-2"]


def test_delete_invoice_answers_204_then_404(api: httpx.Client, customer: dict, plan: dict) -> None:
    invoice = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"])).json()["invoices"][0]

    assert api.delete(f"/invoices/{invoice['uuid']}").status_code == 204
    assert api.delete(f"/invoices/{invoice['uuid']}").json() == {"error": "Invoice not found"}


def test_deleted_invoice_external_id_can_be_imported_again(
    api: httpx.Client, customer: dict, plan: dict
) -> None:
    invoice = import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"])).json()["invoices"][0]
    api.delete(f"/invoices/{invoice['uuid']}")

    assert import_invoices(api, customer["uuid"], trial_invoice(plan["uuid"])).status_code == 201


def test_delete_invoice_with_malformed_uuid_answers_422_invalid_uuid(api: httpx.Client) -> None:
    response = api.delete("/invoices/inv_I_dont_exists")

    assert response.status_code == 422
    assert response.json() == {
        "error": "Invalid UUID passed",
        "error_details": [{"param": "uuid", "code": "invalid", "message": "Invalid UUID passed"}],
    }
