"""Merges and unmerges: 202 first, the effect after the merge delay."""

from __future__ import annotations

import httpx
import pytest

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_customer, create_plan, trial_invoice, wait_until


@pytest.fixture
def billing_source(sandbox: SandboxServer) -> str:
    return str(sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"])


@pytest.fixture
def lead(api: httpx.Client, data_source_uuid: str) -> dict:
    return create_customer(api, data_source_uuid, "cus_0001", lead_created_at="2025-01-05", email="")


@pytest.fixture
def payer(sandbox: SandboxServer, billing_source: str) -> dict:
    return sandbox.state.create_customer(
        data_source_uuid=billing_source,
        external_id="cus_9TSLDKbqG2iKgK",
        status="Active",
        email="a@b.example",
    )


def merge(api: httpx.Client, from_uuid: str, into_uuid: str) -> httpx.Response:
    return api.post(
        "/customers/merges", json={"from": {"customer_uuid": from_uuid}, "into": {"customer_uuid": into_uuid}}
    )


def merged_away(api: httpx.Client, customer_uuid: str) -> bool:
    return api.get(f"/customers/{customer_uuid}").status_code == 404


def test_merge_answers_202_with_an_empty_object(api: httpx.Client, lead: dict, payer: dict) -> None:
    response = merge(api, lead["uuid"], payer["uuid"])

    assert response.status_code == 202
    assert response.json() == {}


def test_merge_is_applied_after_the_delay_not_at_once() -> None:
    with (
        SandboxServer(merge_delay_seconds=0.3) as server,
        httpx.Client(base_url=server.url + "/v1", auth=("k", "")) as client,
    ):
        source = client.post("/data_sources", json={"name": "Leads"}).json()["uuid"]
        lead = create_customer(client, source, "lead")
        payer = create_customer(client, source, "payer")

        merge(client, lead["uuid"], payer["uuid"])

        assert client.get(f"/customers/{lead['uuid']}").status_code == 200
        wait_until(lambda: merged_away(client, lead["uuid"]))


def test_merged_customer_answers_for_both_records(
    api: httpx.Client, data_source_uuid: str, billing_source: str, lead: dict, payer: dict
) -> None:
    merge(api, lead["uuid"], payer["uuid"])
    wait_until(lambda: merged_away(api, lead["uuid"]))

    survivor = api.get(f"/customers/{payer['uuid']}").json()

    assert survivor["external_ids"] == ["cus_9TSLDKbqG2iKgK", "cus_0001"]
    assert survivor["data_source_uuids"] == [billing_source, data_source_uuid]


def test_lookup_of_merged_away_record_returns_the_survivor(
    api: httpx.Client, data_source_uuid: str, lead: dict, payer: dict
) -> None:
    merge(api, lead["uuid"], payer["uuid"])
    wait_until(lambda: merged_away(api, lead["uuid"]))

    found = api.get(
        "/customers", params={"data_source_uuid": data_source_uuid, "external_id": "cus_0001"}
    ).json()

    assert [entry["uuid"] for entry in found["entries"]] == [payer["uuid"]]


def test_merge_keeps_the_lead_date_and_the_paying_status(api: httpx.Client, lead: dict, payer: dict) -> None:
    merge(api, lead["uuid"], payer["uuid"])
    wait_until(lambda: merged_away(api, lead["uuid"]))

    survivor = api.get(f"/customers/{payer['uuid']}").json()

    assert survivor["lead_created_at"] == "2025-01-05T00:00:00.000Z"
    assert survivor["status"] == "Active"


def test_merge_moves_the_invoices_to_the_survivor(
    api: httpx.Client, data_source_uuid: str, lead: dict, payer: dict
) -> None:
    plan = create_plan(api, data_source_uuid)
    api.post(f"/import/customers/{lead['uuid']}/invoices", json={"invoices": [trial_invoice(plan["uuid"])]})

    merge(api, lead["uuid"], payer["uuid"])
    wait_until(lambda: merged_away(api, lead["uuid"]))

    invoices = api.get(f"/import/customers/{payer['uuid']}/invoices").json()["invoices"]
    assert [invoice["external_id"] for invoice in invoices] == ["inv-trial-1"]


def test_merge_by_data_source_and_external_id(
    api: httpx.Client, data_source_uuid: str, billing_source: str, lead: dict, payer: dict
) -> None:
    body = {
        "from": {"data_source_uuid": data_source_uuid, "external_id": "cus_0001"},
        "into": {"data_source_uuid": billing_source, "external_id": "cus_9TSLDKbqG2iKgK"},
    }

    assert api.post("/customers/merges", json=body).status_code == 202
    wait_until(lambda: merged_away(api, lead["uuid"]))


def test_merge_with_unknown_customer_answers_404(api: httpx.Client, lead: dict) -> None:
    response = merge(api, lead["uuid"], "cus_00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.json()["param"] == "into"


def test_invoice_for_merged_record_needs_its_customer_external_id(
    api: httpx.Client, data_source_uuid: str, lead: dict, payer: dict
) -> None:
    plan = create_plan(api, data_source_uuid)
    merge(api, lead["uuid"], payer["uuid"])
    wait_until(lambda: merged_away(api, lead["uuid"]))
    url = f"/import/customers/{payer['uuid']}/invoices"

    without = api.post(url, json={"invoices": [trial_invoice(plan["uuid"], "inv-1")]})
    named = trial_invoice(
        plan["uuid"], "inv-2", customer_external_id="cus_0001", data_source_uuid=data_source_uuid
    )
    with_owner = api.post(url, json={"invoices": [named]})

    assert without.status_code == 422
    assert with_owner.status_code == 201


def test_unmerge_splits_the_record_off_again(
    api: httpx.Client, data_source_uuid: str, lead: dict, payer: dict
) -> None:
    merge(api, lead["uuid"], payer["uuid"])
    wait_until(lambda: merged_away(api, lead["uuid"]))

    response = api.post(
        "/customers/unmerges",
        json={
            "customer_uuid": payer["uuid"],
            "data_source_uuid": data_source_uuid,
            "external_id": "cus_0001",
        },
    )

    assert response.status_code == 202

    def split_off() -> bool:
        found = api.get(
            "/customers", params={"data_source_uuid": data_source_uuid, "external_id": "cus_0001"}
        )
        entries = found.json()["entries"]
        return bool(entries) and entries[0]["uuid"] != payer["uuid"]

    wait_until(split_off)
    assert api.get(f"/customers/{payer['uuid']}").json()["external_ids"] == ["cus_9TSLDKbqG2iKgK"]


def test_unmerge_of_a_customer_never_merged_answers_422(
    api: httpx.Client, data_source_uuid: str, lead: dict
) -> None:
    response = api.post(
        "/customers/unmerges",
        json={"customer_uuid": lead["uuid"], "data_source_uuid": data_source_uuid, "external_id": "cus_0001"},
    )

    assert response.status_code == 422


# ---- merges ChartMogul makes on its own ------------------------------------------------------


def test_a_merge_behind_the_clients_back_applies_at_once_and_is_not_logged(
    sandbox: SandboxServer, api: httpx.Client, data_source_uuid: str, lead: dict, payer: dict
) -> None:
    response = httpx.post(
        sandbox.url + "/_sandbox/merges",
        json={"from": {"customer_uuid": lead["uuid"]}, "into": {"customer_uuid": payer["uuid"]}},
    )

    assert response.status_code == 200
    assert response.json()["uuid"] == payer["uuid"]
    assert merged_away(api, lead["uuid"])
    found = api.get("/customers", params={"data_source_uuid": data_source_uuid, "external_id": "cus_0001"})
    assert [c["uuid"] for c in found.json()["entries"]] == [payer["uuid"]]
    assert [m["requested_by"] for m in sandbox.state.merges()] == ["chartmogul"]
    assert "merges" not in " ".join(r.path for r in sandbox.requests)  # controls are not logged


def test_a_merge_behind_the_clients_back_names_sides_as_the_api_does(
    sandbox: SandboxServer, data_source_uuid: str, lead: dict
) -> None:
    unknown = httpx.post(
        sandbox.url + "/_sandbox/merges",
        json={
            "from": {"data_source_uuid": data_source_uuid, "external_id": "nobody"},
            "into": {"customer_uuid": lead["uuid"]},
        },
    )

    assert unknown.status_code == 404 and unknown.json()["param"] == "from"


def test_with_auto_merge_a_new_customer_matching_an_external_id_elsewhere_is_merged_into_it() -> None:
    with SandboxServer(merge_delay_seconds=0.05, auto_merge=True) as server:
        state = server.state
        leads = state.create_data_source("Leads")["uuid"]
        stripe = state.create_data_source("Stripe", system="Stripe")["uuid"]
        payer = state.create_customer(data_source_uuid=stripe, external_id="acme", status="Active")
        with httpx.Client(base_url=server.url + "/v1", auth=("k", "")) as api:
            lead = api.post(
                "/customers", json={"data_source_uuid": leads, "external_id": "acme", "name": "Acme"}
            )
            other = api.post(
                "/customers", json={"data_source_uuid": leads, "external_id": "zed", "name": "Zed"}
            )

            assert lead.status_code == 201  # answered first, merged a moment later
            wait_until(lambda: api.get(f"/customers/{lead.json()['uuid']}").status_code == 404)
            assert state.find_customer(leads, "acme")["uuid"] == payer["uuid"]
            assert state.find_customer(leads, "zed")["uuid"] == other.json()["uuid"]


def test_with_auto_merge_a_matching_website_domain_merges_too() -> None:
    with SandboxServer(merge_delay_seconds=0.0, auto_merge=True) as server:
        state = server.state
        leads = state.create_data_source("Leads")["uuid"]
        first = state.create_customer(
            data_source_uuid=leads, external_id="a", website_url="https://www.acme.example/"
        )
        state.create_customer(data_source_uuid=leads, external_id="b", website_url="acme.example/pricing")

        assert state.find_customer(leads, "b")["uuid"] == first["uuid"]


def test_the_request_log_says_what_each_request_changed(
    sandbox: SandboxServer, api: httpx.Client, data_source_uuid: str, lead: dict
) -> None:
    plan = create_plan(api, data_source_uuid)
    imported = api.post(
        f"/import/customers/{lead['uuid']}/invoices",
        json={"invoices": [trial_invoice(plan["uuid"], "inv-1")]},
    )
    api.patch(f"/customers/{lead['uuid']}", json={"name": "Renamed"})
    api.delete(f"/invoices/{imported.json()['invoices'][0]['uuid']}")

    changes = [(c.what, c.external_id, c.change) for r in sandbox.requests for c in r.changes]
    assert changes == [
        ("customer", "cus_0001", "created"),
        ("plan", "plan-monthly", "created"),
        ("invoice", "inv-1", "created"),
        ("customer", "cus_0001", "updated"),
        ("invoice", "inv-1", "deleted"),
    ]
    logged = httpx.get(sandbox.url + "/_sandbox/requests").json()["requests"]
    assert next(r["changes"] for r in logged if r["changes"]) == [
        {
            "what": "customer",
            "data_source_uuid": data_source_uuid,
            "external_id": "cus_0001",
            "change": "created",
        }
    ]
