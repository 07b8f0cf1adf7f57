"""JSON (bulk) imports: queued → processing → completed, status details, upserts, failures."""

from __future__ import annotations

import httpx

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_customer, wait_until


def bulk_payload(external_id: str = "import-1", **changes: object) -> dict:
    payload: dict = {
        "external_id": external_id,
        "plans": [
            {"external_id": "plan-m", "name": "Monthly", "interval_count": 1, "interval_unit": "month"}
        ],
        "customers": [
            {"external_id": "lead-1", "name": "Jellytech", "free_trial_started_at": "2025-01-02 00:00:00"},
            {"external_id": "lead-2", "name": "Acme", "lead_created_at": "2025-01-03"},
        ],
        "invoices": [
            {
                "external_id": "inv-1",
                "customer_external_id": "lead-1",
                "date": "2025-01-02",
                "currency": "USD",
            }
        ],
        "line_items": [
            {
                "invoice_external_id": "inv-1",
                "plan_external_id": "plan-m",
                "type": "trial",
                "external_id": "li-1",
                "subscription_external_id": "sub-1",
                "amount_in_cents": 0,
                "quantity": 1,
                "service_period_start": "2025-01-02",
                "service_period_end": "2025-01-16",
            }
        ],
        "transactions": [],
    }
    payload.update(changes)
    return payload


def completed(api: httpx.Client, data_source_uuid: str, import_id: str) -> dict | None:
    body = api.get(f"/data_sources/{data_source_uuid}/json_imports/{import_id}").json()
    return body if body["status"] == "completed" else None


def run_import(api: httpx.Client, data_source_uuid: str, payload: dict) -> dict:
    created = api.post(f"/data_sources/{data_source_uuid}/json_imports", json=payload)
    assert created.status_code == 201, created.text
    wait_until(lambda: completed(api, data_source_uuid, created.json()["id"]) is not None)
    result = completed(api, data_source_uuid, created.json()["id"])
    assert result is not None
    return result


def test_json_import_answers_201_queued(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post(f"/data_sources/{data_source_uuid}/json_imports", json=bulk_payload())

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert set(body) == {
        "id",
        "data_source_uuid",
        "status",
        "external_id",
        "status_details",
        "created_at",
        "updated_at",
    }


def test_json_import_passes_through_processing_to_completed() -> None:
    with (
        SandboxServer(json_import_delay_seconds=0.4) as server,
        httpx.Client(base_url=server.url + "/v1", auth=("k", "")) as client,
    ):
        source = client.post("/data_sources", json={"name": "Leads"}).json()["uuid"]
        client.post(f"/data_sources/{source}/json_imports", json=bulk_payload())
        seen: list[str] = []

        def status() -> str:
            current = client.get(f"/data_sources/{source}/json_imports/import-1").json()["status"]
            if not seen or seen[-1] != current:
                seen.append(current)
            return current

        wait_until(lambda: status() == "completed")

    assert seen == ["queued", "processing", "completed"]


def test_completed_import_creates_plans_customers_and_trial_invoices(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    run_import(api, data_source_uuid, bulk_payload())

    customers = {customer["external_id"]: customer for customer in sandbox.state.customers(data_source_uuid)}
    assert set(customers) == {"lead-1", "lead-2"}
    assert customers["lead-1"]["lead_created_at"] == "2025-01-02T00:00:00.000Z"
    (invoice,) = sandbox.state.invoices(data_source_uuid)
    assert invoice["line_items"][0]["plan_uuid"] == sandbox.state.plans(data_source_uuid)[0]["uuid"]


def test_status_details_report_each_part_imported(api: httpx.Client, data_source_uuid: str) -> None:
    result = run_import(api, data_source_uuid, bulk_payload())

    assert result["status_details"] == {
        "plans": {"status": "imported"},
        "lead-1": {
            "customers": {"status": "imported"},
            "invoices": {"status": "imported"},
            "line_items": {"status": "imported"},
            "transactions": {"status": "imported"},
        },
        "lead-2": {"customers": {"status": "imported"}},
    }


def test_bulk_import_updates_an_existing_customer(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    existing = create_customer(api, data_source_uuid, "lead-2", city="Paris")

    run_import(api, data_source_uuid, bulk_payload())

    updated = api.get(f"/customers/{existing['uuid']}").json()
    assert (updated["name"], updated["city"]) == ("Acme", "Paris")


def test_failed_customer_is_reported_and_not_created(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    payload = bulk_payload(
        customers=[{"external_id": "lead-1", "name": "Jellytech", "email": "not-an-email"}]
    )

    result = run_import(api, data_source_uuid, payload)

    assert result["status_details"]["lead-1"]["customers"] == {
        "status": "failed",
        "errors": {"email": "The value provided does not appear to be a valid email address."},
    }
    assert result["status_details"]["lead-1"]["invoices"]["status"] == "failed"
    assert sandbox.state.customers(data_source_uuid) == []


def test_failed_line_item_fails_its_invoice(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    payload = bulk_payload()
    payload["line_items"][0]["plan_external_id"] = "no-such-plan"

    result = run_import(api, data_source_uuid, payload)

    assert result["status_details"]["lead-1"]["line_items"]["status"] == "failed"
    assert "plan_uuid" in result["status_details"]["lead-1"]["line_items"]["errors"]["inv-1"]
    assert sandbox.state.invoices(data_source_uuid) == []


def test_import_can_be_fetched_by_id_or_external_id(api: httpx.Client, data_source_uuid: str) -> None:
    created = api.post(f"/data_sources/{data_source_uuid}/json_imports", json=bulk_payload()).json()

    by_id = api.get(f"/data_sources/{data_source_uuid}/json_imports/{created['id']}")
    by_external_id = api.get(f"/data_sources/{data_source_uuid}/json_imports/import-1")

    assert by_id.json()["id"] == by_external_id.json()["id"] == created["id"]


def test_duplicate_import_external_id_answers_422(api: httpx.Client, data_source_uuid: str) -> None:
    api.post(f"/data_sources/{data_source_uuid}/json_imports", json=bulk_payload())

    response = api.post(f"/data_sources/{data_source_uuid}/json_imports", json=bulk_payload())

    assert response.status_code == 422


def test_payload_above_5_mb_answers_413(api: httpx.Client, data_source_uuid: str) -> None:
    padding = [{"external_id": f"lead-{n}", "name": "x" * 1000} for n in range(5500)]

    response = api.post(
        f"/data_sources/{data_source_uuid}/json_imports", json=bulk_payload(customers=padding)
    )

    assert response.status_code == 413


def test_import_into_unknown_data_source_answers_404(api: httpx.Client) -> None:
    response = api.post(
        "/data_sources/ds_00000000-0000-0000-0000-000000000000/json_imports", json=bulk_payload()
    )

    assert response.status_code == 404
    assert response.json() == {"error": "Data source not found"}
