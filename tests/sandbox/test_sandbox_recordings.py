"""Replays of the recorded real exchanges in ``shared/chartmogul-recordings/``.

Each test sets up the state the recording assumes, sends the recorded request (our uuids in place of
the recorded ones) and compares the status code and the body: exactly for error bodies, by key
shape for objects (every recorded key must be there; newer keys may be added).
Where two recordings disagree, the newer one wins: a data source without a name is a 400 (2023),
not a 422 (2016); a malformed invoice uuid is a 422 (2023), so ``inv_123`` no longer reaches the
2016 404.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_customer, create_plan, wait_until

RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "chartmogul-recordings"

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason="the shared recordings are not available")


def recording(file_name: str, path_suffix: str) -> list[dict[str, Any]]:
    """The interactions of the recorded pair whose source path ends with ``path_suffix``."""
    document = json.loads((RECORDINGS / file_name).read_text())
    for pair in document["pairs"]:
        if pair["source"]["path"].endswith(path_suffix):
            return list(pair["interactions"])
    raise LookupError(f"{path_suffix} not in {file_name}")


def replay(
    api: httpx.Client, interaction: dict[str, Any], replacements: dict[str, str] | None = None
) -> httpx.Response:
    """Send a recorded request to the sandbox, the recorded ids swapped for ours."""
    request = json.loads(_swap(json.dumps(interaction["request"]), replacements or {}))
    path = request["uri"].removeprefix("https://api.chartmogul.com/v1")
    body = request["body"] if request["body"] not in (None, {}) or request["method"] == "POST" else None
    return api.request(request["method"], path, json=body)


def _swap(text: str, replacements: dict[str, str]) -> str:
    for recorded, ours in replacements.items():
        text = text.replace(recorded, ours)
    return text


def missing_keys(recorded: Any, ours: Any, where: str = "body") -> list[str]:
    """Recorded keys (recursively) that our answer lacks; list items are paired by ``type`` when they
    have one (the API reorders line items), and custom attributes are data, not shape."""
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            return [where]
        missing = [f"{where}.{key}" for key in recorded if key not in ours]
        for key in recorded:
            if key in ours and key != "custom":
                missing += missing_keys(recorded[key], ours[key], f"{where}.{key}")
        return missing
    if isinstance(recorded, list) and recorded and isinstance(recorded[0], dict):
        missing = []
        for index, item in enumerate(recorded):
            partner = next((mine for mine in ours if mine.get("type") == item.get("type")), None)
            missing += missing_keys(item, partner, f"{where}[{index}]")
        return missing
    return []


def test_ping_with_bad_credentials_matches_recording(sandbox: SandboxServer) -> None:
    (interaction,) = recording("auth_and_not_found.json", "and_fails_on_incorrect_credentials.yml")

    with SandboxServer(api_key="right") as server:
        response = httpx.get(server.url + "/v1/ping", auth=("wrong", ""))

    assert (response.status_code, response.json()) == (401, interaction["response"]["body"])


def test_ping_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording("auth_and_not_found.json", "when_credentials_correct.yml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (200, interaction["response"]["body"])


def test_unknown_data_source_delete_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording("auth_and_not_found.json", "correctly_raises_errors_on_404.yml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (404, interaction["response"]["body"])


def test_unknown_customer_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording("auth_and_not_found.json", "merges_customers.yml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (404, interaction["response"]["body"])


def test_create_list_delete_customer_2021_matches_recording(api: httpx.Client, data_source_uuid: str) -> None:
    create, listing, delete = recording(
        "customer_create_success.json", "correctly_interracts_with_the_API.yml"
    )
    recorded_uuid = create["response"]["body"]["uuid"]
    swaps = {create["request"]["body"]["data_source_uuid"]: data_source_uuid}

    created = replay(api, create, swaps)
    listed = replay(api, listing, swaps)
    deleted = replay(api, delete, {recorded_uuid: created.json()["uuid"]})

    assert created.status_code == 201
    assert missing_keys(create["response"]["body"], created.json()) == []
    for field in ("lead_created_at", "free_trial_started_at", "address", "status", "customer-since"):
        if field != "status":
            assert created.json()[field] == create["response"]["body"][field], field
    assert listed.status_code == 200
    assert missing_keys(listing["response"]["body"], listed.json()) == []
    assert deleted.status_code == 204


def test_minimal_create_2023_matches_recording_keys(api: httpx.Client, data_source_uuid: str) -> None:
    (create,) = recording("customer_create_success.json", "creates_the_customer_correctly.yml")
    recorded = create["response"]["body"]

    response = replay(api, create, {create["request"]["body"]["data_source_uuid"]: data_source_uuid})

    assert response.status_code == 201
    assert set(response.json()) == set(recorded)
    assert missing_keys(recorded, response.json()) == []
    assert (response.json()["status"], response.json()["company"]) == ("New Lead", "")


def test_customer_with_all_fields_null_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording("validation_errors.json", "correctly_handles_a_422_response.yml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (422, interaction["response"]["body"])


def test_update_with_invalid_email_matches_recording(api: httpx.Client, data_source_uuid: str) -> None:
    (interaction,) = recording("validation_errors.json", "raises_422_for_update_with_invalid_data.yml")
    customer = create_customer(api, data_source_uuid)
    recorded_uuid = "cus_782b0716-a728-11e6-8eab-a7d0e8cd5c1e"

    response = replay(api, interaction, {recorded_uuid: customer["uuid"]})

    assert (response.status_code, response.json()) == (422, interaction["response"]["body"])


def test_data_source_without_name_matches_the_2023_recording(api: httpx.Client) -> None:
    (interaction,) = recording("validation_errors.json", "delete_invoice.yaml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (400, interaction["response"]["body"])


def test_plan_with_all_fields_null_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording(
        "validation_errors.json", "ChartMogul_Plan/API_Interactions/correctly_handles_a_422_error.yml"
    )

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (422, interaction["response"]["body"])


def test_duplicates_match_the_client_constants(api: httpx.Client, data_source_uuid: str) -> None:
    expected = json.loads((RECORDINGS / "duplicate_external_id_NOT_RECORDED.json").read_text())
    customer = {"data_source_uuid": data_source_uuid, "external_id": "x", "name": "X"}
    plan = {"data_source_uuid": data_source_uuid, "external_id": "p", "name": "P", "interval_count": 1}
    plan["interval_unit"] = "month"
    api.post("/customers", json=customer)
    api.post("/plans", json=plan)

    answers = {
        "customer": api.post("/customers", json=customer),
        "plan": api.post("/plans", json=plan),
        "data_source_name": api.post("/data_sources", json={"name": "Leads"}),
    }

    for name, response in answers.items():
        assert (response.status_code, response.json()) == (
            expected[name]["status"],
            expected[name]["body"],
        ), name


def test_duplicate_invoice_with_its_entities_matches_the_expected_shape(
    api: httpx.Client, data_source_uuid: str
) -> None:
    expected = json.loads((RECORDINGS / "duplicate_external_id_NOT_RECORDED.json").read_text())[
        "invoice_import"
    ]
    customer = create_customer(api, data_source_uuid)
    plan = create_plan(api, data_source_uuid)
    invoice = {
        "external_id": "INV0001",
        "date": "2025-01-01",
        "currency": "USD",
        "line_items": [
            {
                "type": "subscription",
                "external_id": "li-1",
                "subscription_external_id": "sub-1",
                "plan_uuid": plan["uuid"],
                "service_period_start": "2025-01-01",
                "service_period_end": "2025-02-01",
                "amount_in_cents": 1000,
            }
        ],
        "transactions": [
            {"type": "payment", "date": "2025-01-01", "result": "successful", "external_id": "tr-1"}
        ],
    }
    url = f"/import/customers/{customer['uuid']}/invoices"
    api.post(url, json={"invoices": [invoice]})

    response = api.post(url, json={"invoices": [invoice]})

    assert response.status_code == expected["status"]
    assert response.json()["invoices"][0]["errors"] == expected["body"]["invoices"][0]["errors"]


def test_delete_invoice_with_malformed_uuid_matches_recording(api: httpx.Client) -> None:
    interaction = recording("invoice_errors.json", "raises_error_on_deleting_non-existing_invoice.yml")[0]

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (422, interaction["response"]["body"])


def test_delete_unknown_invoice_matches_the_2016_body(api: httpx.Client) -> None:
    document = json.loads((RECORDINGS / "invoice_errors.json").read_text())
    recorded_body = document["pairs"][1]["interactions"][0]["response"]["body"]

    response = api.delete("/invoices/inv_00000000-0000-0000-0000-000000000000")

    assert (response.status_code, response.json()) == (404, recorded_body)


def test_import_with_external_id_in_path_matches_the_reported_404(api: httpx.Client) -> None:
    reported = json.loads((RECORDINGS / "invoice_errors.json").read_text())["not_recorded_but_reported"][0]

    response = api.post("/import/customers/cus_0001/invoices", json={"invoices": []})

    assert (response.status_code, response.json()) == (404, reported["response_body"])


def test_invoice_list_and_import_2023_match_recording(api: httpx.Client, data_source_uuid: str) -> None:
    listing, create = recording("invoice_import_success.json", "creates_the_customer_invoice_correctly.yml")
    customer = create_customer(api, data_source_uuid, "cus_001")
    plan = create_plan(api, data_source_uuid)
    swaps = {
        "cus_23551596-2c7e-11ee-9ea1-2bfe193640c0": customer["uuid"],
        "ds_03cfd2c4-2c7e-11ee-ab23-cb0f008cff46": data_source_uuid,
        "pl_de9e281e-76cb-11ee-b63f-b727630ce4d4": plan["uuid"],
    }

    listed = replay(api, listing, swaps)
    imported = replay(api, create, swaps)

    assert listed.status_code == 200
    assert missing_keys(listing["response"]["body"], listed.json()) == []
    assert imported.status_code == 201, imported.text
    assert missing_keys(create["response"]["body"], imported.json()) == []
    recorded_invoice = create["response"]["body"]["invoices"][0]
    assert imported.json()["invoices"][0]["date"] == recorded_invoice["date"]
    assert imported.json()["invoices"][0]["line_items"][0]["amount_in_cents"] == 1000


def test_customer_pages_match_recording_keys(api: httpx.Client, data_source_uuid: str) -> None:
    first, second = recording("list_customers_pages.json", "paginates_correctly.yml")
    for number in range(3):
        create_customer(api, data_source_uuid, f"cus_00{number}")

    first_page = replay(api, first)
    second_page = api.get("/customers", params={"per_page": 1, "cursor": first_page.json()["cursor"]})

    assert set(first_page.json()) == set(first["response"]["body"])
    assert set(second_page.json()) == set(second["response"]["body"])
    assert missing_keys(first["response"]["body"], first_page.json()) == []


def test_unknown_external_id_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording("list_customers_pages.json", "returns_nil_if_customer_does_not_exist.yml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (200, interaction["response"]["body"])


def test_search_without_hit_matches_recording(api: httpx.Client) -> None:
    (interaction,) = recording("list_customers_pages.json", "does_not_find_any.yml")

    response = replay(api, interaction)

    assert (response.status_code, response.json()) == (404, interaction["response"]["body"])


def test_merge_then_import_for_merged_away_record_matches_the_go_recording(
    api: httpx.Client, data_source_uuid: str
) -> None:
    first, second, merge, invoice_import = recording("merge_customers.json", "create_invoice.yaml")
    recorded_source = first["request"]["body"]["data_source_uuid"]
    swaps = {recorded_source: data_source_uuid}
    customer_1 = replay(api, first, swaps)
    customer_2 = replay(api, second, swaps)
    plan = create_plan(api, data_source_uuid)
    swaps |= {
        first["response"]["body"]["uuid"]: customer_1.json()["uuid"],
        second["response"]["body"]["uuid"]: customer_2.json()["uuid"],
        "pl_513624d4-cde9-11e9-bed4-f37711d19961": plan["uuid"],
    }

    merged = replay(api, merge, swaps)
    # the recording shows the import a second after the merge: the merge had been applied by then
    wait_until(lambda: api.get(f"/customers/{customer_1.json()['uuid']}").status_code == 404)
    imported = replay(api, invoice_import, swaps)

    assert (customer_1.status_code, customer_2.status_code) == (201, 201)
    assert missing_keys(first["response"]["body"], customer_1.json()) == []
    assert (merged.status_code, merged.json()) == (202, {})
    assert imported.status_code == 201, imported.text
    assert missing_keys(invoice_import["response"]["body"], imported.json()) == []


def test_unmerge_answers_202_empty_like_the_recording(api: httpx.Client, data_source_uuid: str) -> None:
    (interaction,) = recording("merge_customers.json", "unmerges_correctly_with_the_class_method.yml")
    lead = create_customer(api, data_source_uuid, "cus_O075O8NH0LrtG8")
    payer = create_customer(api, data_source_uuid, "payer")
    api.post(
        "/customers/merges",
        json={"from": {"customer_uuid": lead["uuid"]}, "into": {"customer_uuid": payer["uuid"]}},
    )
    wait_until(lambda: api.get(f"/customers/{lead['uuid']}").status_code == 404)
    swaps = {
        "cus_cd9e5f29-6299-40e5-b343-0bd1ed228b4f": payer["uuid"],
        "ds_788ec6ae-dd51-11ee-bd46-a3ec952dc041": data_source_uuid,
    }

    response = replay(api, interaction, swaps)

    assert (response.status_code, response.json()) == (202, interaction["response"]["body"])
