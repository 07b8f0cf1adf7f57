"""Data sources and plans: creation, duplicates, validation, lists, 404 shapes."""

from __future__ import annotations

import httpx

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_plan, plan_body


def test_create_data_source_answers_201_as_a_custom_source(api: httpx.Client) -> None:
    response = api.post("/data_sources", json={"name": "Leads"})

    assert response.status_code == 201
    body = response.json()
    assert body["uuid"].startswith("ds_")
    assert (body["name"], body["system"], body["status"]) == ("Leads", "Custom", "idle")


def test_duplicate_data_source_name_answers_422_taken(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post("/data_sources", json={"name": "Leads"})

    assert response.status_code == 422
    assert response.json() == {"errors": {"name": "Has already been taken."}}


def test_data_source_without_name_answers_400_missing(api: httpx.Client) -> None:
    response = api.post("/data_sources", json={})

    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": 'Parameter "name" is missing', "param": "name"}


def test_list_data_sources_filters_by_name_unpaginated(api: httpx.Client, data_source_uuid: str) -> None:
    api.post("/data_sources", json={"name": "Other"})

    body = api.get("/data_sources", params={"name": "Leads"}).json()

    assert list(body) == ["data_sources"]
    assert [source["uuid"] for source in body["data_sources"]] == [data_source_uuid]


def test_list_data_sources_filters_by_system(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.state.create_data_source("Stripe billing", system="Stripe")
    api.post("/data_sources", json={"name": "Leads"})

    found = api.get("/data_sources", params={"system": "Stripe"}).json()["data_sources"]

    assert [source["name"] for source in found] == ["Stripe billing"]


def test_delete_data_source_answers_204_then_404(api: httpx.Client, data_source_uuid: str) -> None:
    assert api.delete(f"/data_sources/{data_source_uuid}").status_code == 204

    response = api.get(f"/data_sources/{data_source_uuid}")
    assert response.status_code == 404
    assert response.json() == {"error": "Data source not found"}


def test_deleting_a_data_source_deletes_its_customers(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    sandbox.state.create_customer(data_source_uuid=data_source_uuid, external_id="lead-1")

    api.delete(f"/data_sources/{data_source_uuid}")

    assert sandbox.state.customers() == []


def test_create_plan_answers_201_with_prefixed_uuid(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post("/plans", json=plan_body(data_source_uuid))

    assert response.status_code == 201
    assert response.json()["uuid"].startswith("pl_")
    assert response.json()["external_id"] == "plan-monthly"


def test_plan_without_external_id_gets_a_generated_one(api: httpx.Client, data_source_uuid: str) -> None:
    body = plan_body(data_source_uuid)
    del body["external_id"]

    assert api.post("/plans", json=body).json()["external_id"]


def test_duplicate_plan_external_id_answers_422(api: httpx.Client, data_source_uuid: str) -> None:
    create_plan(api, data_source_uuid)

    response = api.post("/plans", json=plan_body(data_source_uuid))

    assert response.status_code == 422
    assert response.json() == {
        "errors": {"external_id": "A plan with this identifier already exists in our system."}
    }


def test_plan_with_missing_fields_answers_the_recorded_messages(api: httpx.Client) -> None:
    body = {"data_source_uuid": None, "name": None, "interval_count": None, "interval_unit": None}

    response = api.post("/plans", json=body)

    assert response.status_code == 422
    assert response.json() == {
        "errors": {
            "name": "A unique name is required for each plan.",
            "interval_count": "is not a number",
            "interval_unit": "Only 'day', 'month' or 'year' are valid values for interval_unit.",
            "data_source_uuid": "A valid data source UUID is required for each plan.",
        }
    }


def test_plan_interval_unit_week_is_refused(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post("/plans", json=plan_body(data_source_uuid, interval_unit="week"))

    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"interval_unit"}


def test_list_plans_by_data_source_and_external_id(api: httpx.Client, data_source_uuid: str) -> None:
    plan = create_plan(api, data_source_uuid, "plan-a")
    create_plan(api, data_source_uuid, "plan-b")

    body = api.get("/plans", params={"data_source_uuid": data_source_uuid, "external_id": "plan-a"}).json()

    assert [found["uuid"] for found in body["plans"]] == [plan["uuid"]]
    assert body["has_more"] is False


def test_list_plans_pages_with_a_cursor(api: httpx.Client, data_source_uuid: str) -> None:
    for number in range(3):
        create_plan(api, data_source_uuid, f"plan-{number}")

    first = api.get("/plans", params={"per_page": 2}).json()
    second = api.get("/plans", params={"per_page": 2, "cursor": first["cursor"]}).json()

    assert [plan["external_id"] for plan in first["plans"] + second["plans"]] == [
        "plan-0",
        "plan-1",
        "plan-2",
    ]


def test_patch_plan_answers_202_with_the_updated_plan(api: httpx.Client, data_source_uuid: str) -> None:
    plan = create_plan(api, data_source_uuid)

    response = api.patch(f"/plans/{plan['uuid']}", json={"name": "Monthly Pro"})

    assert response.status_code == 202
    assert response.json()["name"] == "Monthly Pro"


def test_unknown_plan_answers_404_plan_not_found(api: httpx.Client) -> None:
    response = api.get("/plans/pl_00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.json() == {"error": "Plan not found"}
