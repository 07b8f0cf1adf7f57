"""Authentication, the /_sandbox controls, and answers to unknown routes."""

from __future__ import annotations

import httpx

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_customer

UNAUTHORIZED = {"code": 401, "message": "No valid API key provided", "param": None}


def test_request_without_credentials_answers_401(sandbox: SandboxServer) -> None:
    response = httpx.get(sandbox.url + "/v1/ping")

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_any_non_empty_key_is_accepted_without_api_key_option(sandbox: SandboxServer) -> None:
    assert httpx.get(sandbox.url + "/v1/ping", auth=("whatever", "")).json() == {"data": "pong!"}


def test_empty_key_is_refused(sandbox: SandboxServer) -> None:
    assert httpx.get(sandbox.url + "/v1/ping", auth=("", "")).status_code == 401


def test_only_the_configured_api_key_is_accepted() -> None:
    with SandboxServer(api_key="secret") as server:
        wrong = httpx.get(server.url + "/v1/ping", auth=("other", ""))
        right = httpx.get(server.url + "/v1/ping", auth=("secret", ""))
        with_password = httpx.get(server.url + "/v1/ping", auth=("secret", "secret"))

    assert (wrong.status_code, wrong.json()) == (401, UNAUTHORIZED)
    assert right.status_code == with_password.status_code == 200


def test_state_endpoint_shows_what_was_created(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    create_customer(api, data_source_uuid)

    state = httpx.get(sandbox.url + "/_sandbox/state").json()

    assert set(state) == {"data_sources", "customers", "plans", "invoices", "merges", "json_imports"}
    assert [customer["external_id"] for customer in state["customers"]] == ["lead-1"]


def test_requests_endpoint_logs_v1_requests_only(api: httpx.Client, sandbox: SandboxServer) -> None:
    api.get("/ping")
    httpx.get(sandbox.url + "/_sandbox/state")

    body = httpx.get(sandbox.url + "/_sandbox/requests").json()

    assert [(r["method"], r["path"], r["status"]) for r in body["requests"]] == [("GET", "/v1/ping", 200)]
    assert body["fault_counts"] == {}


def test_request_log_marks_applied_writes(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    api.post("/customers", json={})

    applied = [(entry.path, entry.status, entry.applied) for entry in sandbox.requests]

    assert applied == [("/v1/data_sources", 201, True), ("/v1/customers", 422, False)]


def test_reset_endpoint_forgets_state_and_log(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    assert httpx.post(sandbox.url + "/_sandbox/reset").status_code == 204

    assert sandbox.state.snapshot()["data_sources"] == []
    assert sandbox.requests == []


def test_unknown_api_route_answers_404_json(api: httpx.Client) -> None:
    response = api.get("/no_such_thing")

    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_body_that_is_not_json_answers_400(api: httpx.Client) -> None:
    response = api.post("/customers", content=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code == 400
