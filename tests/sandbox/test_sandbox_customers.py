"""Customers: create, update, lookups, the lead default rule and the validation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mogulflow_sandbox import SandboxServer, Strictness

from .sandbox_builders import create_customer, customer_body


def test_create_customer_answers_201_with_hyphenated_keys_and_prefixed_uuid(
    api: httpx.Client, data_source_uuid: str
) -> None:
    response = api.post("/customers", json=customer_body(data_source_uuid))

    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    customer = response.json()
    assert customer["uuid"].startswith("cus_")
    assert {"customer-since", "chartmogul-url", "billing-system-type", "currency-sign"} <= set(customer)
    assert customer["data_source_uuids"] == [data_source_uuid]
    assert customer["external_ids"] == ["lead-1"]


def test_new_customer_is_a_new_lead(api: httpx.Client, data_source_uuid: str) -> None:
    assert create_customer(api, data_source_uuid)["status"] == "New Lead"


def test_timestamps_are_answered_in_iso_form_with_milliseconds(
    api: httpx.Client, data_source_uuid: str
) -> None:
    customer = create_customer(api, data_source_uuid, lead_created_at="2016-10-01 23:55:00 UTC")

    assert customer["lead_created_at"] == "2016-10-01T23:55:00.000Z"


def test_trial_start_without_lead_date_sets_lead_created_at(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid, free_trial_started_at="2025-02-10 00:00:00")

    assert customer["lead_created_at"] == "2025-02-10T00:00:00.000Z"


def test_update_adding_trial_start_sets_missing_lead_created_at(
    api: httpx.Client, data_source_uuid: str
) -> None:
    customer = create_customer(api, data_source_uuid)

    updated = api.patch(
        f"/customers/{customer['uuid']}", json={"free_trial_started_at": "2025-02-10T00:00:00Z"}
    )

    assert updated.status_code == 200
    assert updated.json()["lead_created_at"] == "2025-02-10T00:00:00.000Z"


def test_update_keeps_an_existing_lead_date(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid, lead_created_at="2025-01-05")

    updated = api.patch(f"/customers/{customer['uuid']}", json={"free_trial_started_at": "2025-02-10"})

    assert updated.json()["lead_created_at"] == "2025-01-05T00:00:00.000Z"


def test_put_updates_like_patch(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid)

    updated = api.put(f"/customers/{customer['uuid']}", json={"city": "Berlin"})

    assert updated.status_code == 200
    assert updated.json()["city"] == "Berlin"
    assert updated.json()["name"] == "Jellytech"


def test_missing_required_fields_answer_422_with_field_messages(api: httpx.Client) -> None:
    response = api.post("/customers", json={"data_source_uuid": None, "external_id": None, "name": None})

    assert response.status_code == 422
    assert response.json() == {
        "errors": {
            "external_id": "A unique external ID is required for each customer.",
            "name": "A name is required for each customer.",
            "data_source_uuid": "A valid data source UUID is required for each customer.",
        }
    }


def test_unknown_data_source_is_a_missing_data_source(api: httpx.Client) -> None:
    response = api.post("/customers", json=customer_body("ds_00000000-0000-0000-0000-000000000000"))

    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"data_source_uuid"}


def test_invalid_email_answers_422_with_code_message_param(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post("/customers", json=customer_body(data_source_uuid, email="schnitzel.com"))

    assert response.status_code == 422
    assert response.json() == {
        "code": 422,
        "message": "The value provided does not appear to be a valid email address.",
        "param": "email",
    }


def test_duplicate_external_id_in_same_data_source_answers_422(
    api: httpx.Client, data_source_uuid: str
) -> None:
    create_customer(api, data_source_uuid)

    response = api.post("/customers", json=customer_body(data_source_uuid))

    assert response.status_code == 422
    assert response.json() == {
        "errors": {"external_id": "The external ID for this customer already exists in our system."}
    }


def test_same_external_id_in_another_data_source_is_allowed(api: httpx.Client, data_source_uuid: str) -> None:
    other = api.post("/data_sources", json={"name": "Other"}).json()["uuid"]
    create_customer(api, data_source_uuid)

    assert api.post("/customers", json=customer_body(other)).status_code == 201


def test_country_must_be_iso_alpha_2(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post("/customers", json=customer_body(data_source_uuid, country="Germany"))

    assert response.status_code == 422
    assert response.json()["param"] == "country"


def test_country_code_is_accepted_in_any_case(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid, country="de")

    assert customer["address"]["country"] == "Germany"


def test_lead_date_after_trial_start_is_rejected(api: httpx.Client, data_source_uuid: str) -> None:
    body = customer_body(data_source_uuid, lead_created_at="2025-03-01", free_trial_started_at="2025-02-01")

    response = api.post("/customers", json=body)

    assert response.status_code == 422
    assert response.json()["param"] == "lead_created_at"


def test_timestamp_in_the_future_is_rejected(api: httpx.Client, data_source_uuid: str) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    response = api.post("/customers", json=customer_body(data_source_uuid, lead_created_at=tomorrow))

    assert response.status_code == 422
    assert response.json()["param"] == "lead_created_at"


def test_timestamp_within_clock_skew_is_accepted(api: httpx.Client, data_source_uuid: str) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()

    assert (
        api.post("/customers", json=customer_body(data_source_uuid, lead_created_at=soon)).status_code == 201
    )


def test_unparseable_timestamp_is_rejected(api: httpx.Client, data_source_uuid: str) -> None:
    response = api.post("/customers", json=customer_body(data_source_uuid, lead_created_at="Tue Jan 5 2025"))

    assert response.status_code == 422
    assert response.json()["param"] == "lead_created_at"


def test_relaxed_strictness_accepts_what_strict_rejects() -> None:
    relaxed = Strictness(
        check_country_code=False, check_lead_before_trial=False, check_future_timestamps=False
    )
    with (
        SandboxServer(strictness=relaxed) as server,
        httpx.Client(base_url=server.url + "/v1", auth=("k", "")) as client,
    ):
        source = client.post("/data_sources", json={"name": "Leads"}).json()["uuid"]
        body = customer_body(
            source, country="Narnia", lead_created_at="2999-01-01", free_trial_started_at="2998-01-01"
        )

        assert client.post("/customers", json=body).status_code == 201


def test_get_unknown_customer_answers_404_naming_the_bare_uuid(api: httpx.Client) -> None:
    response = api.get("/customers/cus_35da5436-a730-11e6-a5a0-d32f2a781b50")

    assert response.status_code == 404
    assert response.json() == {
        "code": 404,
        "message": 'Customer "35da5436-a730-11e6-a5a0-d32f2a781b50" does not exist',
        "param": "customer_id",
    }


def test_delete_customer_answers_204_and_then_404(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid)

    assert api.delete(f"/customers/{customer['uuid']}").status_code == 204
    assert api.get(f"/customers/{customer['uuid']}").status_code == 404


def test_list_by_data_source_and_external_id_finds_the_customer(
    api: httpx.Client, data_source_uuid: str
) -> None:
    customer = create_customer(api, data_source_uuid, "cus_0001")
    create_customer(api, data_source_uuid, "cus_0002")

    found = api.get("/customers", params={"data_source_uuid": data_source_uuid, "external_id": "cus_0001"})

    assert [entry["uuid"] for entry in found.json()["entries"]] == [customer["uuid"]]


def test_list_by_unknown_external_id_answers_200_with_no_entries(api: httpx.Client) -> None:
    response = api.get("/customers", params={"external_id": "unknown"})

    assert response.status_code == 200
    assert response.json()["entries"] == []
    assert response.json()["has_more"] is False


def test_list_filters_by_status(api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str) -> None:
    create_customer(api, data_source_uuid, "lead")
    sandbox.state.create_customer(data_source_uuid=data_source_uuid, external_id="payer", status="Active")

    found = api.get("/customers", params={"status": "Active"}).json()["entries"]

    assert [entry["external_id"] for entry in found] == ["payer"]


def test_list_pages_with_a_cursor(api: httpx.Client, data_source_uuid: str) -> None:
    for number in range(5):
        create_customer(api, data_source_uuid, f"lead-{number}")

    first = api.get("/customers", params={"per_page": 2}).json()
    second = api.get("/customers", params={"per_page": 2, "cursor": first["cursor"]}).json()
    third = api.get("/customers", params={"per_page": 2, "cursor": second["cursor"]}).json()

    seen = [entry["external_id"] for page in (first, second, third) for entry in page["entries"]]
    assert seen == [f"lead-{number}" for number in range(5)]
    assert (first["has_more"], second["has_more"], third["has_more"]) == (True, True, False)


def test_first_page_carries_deprecated_keys_and_later_pages_do_not(
    api: httpx.Client, data_source_uuid: str
) -> None:
    for number in range(3):
        create_customer(api, data_source_uuid, f"lead-{number}")

    first = api.get("/customers", params={"per_page": 2}).json()
    second = api.get("/customers", params={"per_page": 2, "cursor": first["cursor"]}).json()

    assert {"per_page", "page", "current_page", "total_pages"} <= set(first)
    assert first["total_pages"] == 2
    assert set(second) == {"entries", "cursor", "has_more"}


def test_per_page_is_capped_at_200(api: httpx.Client) -> None:
    assert api.get("/customers", params={"per_page": 500}).json()["per_page"] == 200


def test_page_parameter_is_refused_as_deprecated(api: httpx.Client) -> None:
    response = api.get("/customers", params={"page": 2})

    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": 'Parameter "page" is deprecated', "param": "page"}


def test_garbage_cursor_answers_400(api: httpx.Client) -> None:
    assert api.get("/customers", params={"cursor": "not-a-cursor"}).status_code == 400


def test_search_by_email_finds_customers_case_insensitively(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid, email="Hello@Jellytech.example")

    found = api.get("/customers/search", params={"email": "hello@jellytech.example"})

    assert found.status_code == 200
    assert [entry["uuid"] for entry in found.json()["entries"]] == [customer["uuid"]]


def test_search_without_hit_answers_404(api: httpx.Client) -> None:
    response = api.get("/customers/search", params={"email": "no@email.com"})

    assert response.status_code == 404
    assert response.json() == {
        "code": 404,
        "message": 'Can\'t find any customers with email: "no@email.com"',
        "param": "email",
    }


def test_search_follows_an_email_change(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(api, data_source_uuid, email="old@jellytech.example")
    api.patch(f"/customers/{customer['uuid']}", json={"email": "new@jellytech.example"})

    assert api.get("/customers/search", params={"email": "old@jellytech.example"}).status_code == 404
    assert api.get("/customers/search", params={"email": "new@jellytech.example"}).status_code == 200


@pytest.mark.parametrize(
    "custom, expected",
    [
        ([{"type": "String", "key": "channel", "value": "Twitter"}], {"channel": "Twitter"}),
        ({"CAC": 25, "channel": {"value": "Ads", "source": "x"}}, {"CAC": 25, "channel": "Ads"}),
    ],
)
def test_custom_attributes_are_kept_from_array_or_map_form(
    api: httpx.Client, data_source_uuid: str, custom: object, expected: dict
) -> None:
    customer = create_customer(api, data_source_uuid, attributes={"tags": ["lead"], "custom": custom})

    assert customer["attributes"]["custom"] == expected
    assert customer["attributes"]["tags"] == ["lead"]
