"""Custom attributes and tags: the sandbox answers as the recordings show (docs/api-notes.md), and the
official, unmodified ``chartmogul`` client's attribute and tag calls run against it."""

from __future__ import annotations

import chartmogul
import httpx
import pytest

from mogulflow_sandbox import SandboxServer

from .sandbox_builders import create_customer


@pytest.fixture
def config(sandbox: SandboxServer) -> chartmogul.Config:
    configuration = chartmogul.Config("test-key", max_retries=0)
    configuration.uri = sandbox.url + "/v1"
    return configuration


@pytest.fixture
def customer_uuid(api: httpx.Client, data_source_uuid: str) -> str:
    return create_customer(api, data_source_uuid)["uuid"]


TYPED = [
    {"type": "String", "key": "StringKey", "value": "String Value"},
    {"type": "Integer", "key": "integer_key", "value": 1234},
    {"type": "Timestamp", "key": "timestamp_key", "value": "2016-01-31 00:00:00 UTC"},
    {"type": "Boolean", "key": "boolean_key", "value": True},
]


def test_official_client_adds_updates_and_removes_custom_attributes(
    config: chartmogul.Config, customer_uuid: str
) -> None:
    added = chartmogul.CustomAttributes.add(config, uuid=customer_uuid, data={"custom": TYPED}).get()
    assert added.custom == {
        "StringKey": "String Value",
        "integer_key": 1234,
        "timestamp_key": "2016-01-31T00:00:00.000Z",
        "boolean_key": True,
    }
    updated = chartmogul.CustomAttributes.update(
        config, uuid=customer_uuid, data={"custom": {"integer_key": 5678, "boolean_key": False}}
    ).get()
    assert updated.custom["integer_key"] == 5678 and updated.custom["boolean_key"] is False
    removed = chartmogul.CustomAttributes.remove(
        config, uuid=customer_uuid, data={"custom": ["StringKey", "integer_key"]}
    ).get()
    assert removed.message == "Custom attributes deleted from customer"
    assert set(removed.custom) == {"timestamp_key", "boolean_key"}


def test_official_client_adds_and_removes_tags(config: chartmogul.Config, customer_uuid: str) -> None:
    added = chartmogul.Tags.add(config, uuid=customer_uuid, data={"tags": ["important", "Prio1"]}).get()
    assert added.tags == ["important", "Prio1"]
    again = chartmogul.Tags.add(config, uuid=customer_uuid, data={"tags": ["Prio1", "vip"]}).get()
    assert again.tags == ["important", "Prio1", "vip"]
    left = chartmogul.Tags.remove(config, uuid=customer_uuid, data={"tags": ["important"]}).get()
    assert left.tags == ["Prio1", "vip"]


def test_official_client_reads_every_attribute(config: chartmogul.Config, customer_uuid: str) -> None:
    chartmogul.Tags.add(config, uuid=customer_uuid, data={"tags": ["managed"]}).get()
    chartmogul.CustomAttributes.add(
        config, uuid=customer_uuid, data={"custom": [{"type": "Decimal", "key": "CAC", "value": 213.5}]}
    ).get()
    read = chartmogul.Attributes.retrieve(config, uuid=customer_uuid).get()
    assert read.tags == ["managed"] and read.custom == {"CAC": 213.5}


def test_customer_created_with_attributes_holds_them(api: httpx.Client, data_source_uuid: str) -> None:
    customer = create_customer(
        api,
        data_source_uuid,
        attributes={
            "tags": ["trial", "trial"],
            "custom": [{"type": "String", "key": "channel", "value": "ads"}],
        },
    )
    assert customer["attributes"]["tags"] == ["trial"]
    assert customer["attributes"]["custom"] == {"channel": "ads"}


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ({"type": "Integer", "key": "seats", "value": "12"}, "not a valid Integer"),
        ({"type": "Boolean", "key": "paid", "value": "yes"}, "not a valid Boolean"),
        ({"type": "String", "key": "note", "value": "x" * 256}, "not a valid String"),
        ({"type": "Timestamp", "key": "seen", "value": "yesterday"}, "not a valid Timestamp"),
        ({"type": "Text", "key": "note", "value": "x"}, "must be one of"),
        ({"type": "String", "key": "lead-source", "value": "x"}, "letters, digits and underscores"),
    ],
)
def test_a_value_not_of_its_type_answers_422(
    api: httpx.Client, customer_uuid: str, item: dict, why: str
) -> None:
    response = api.post(f"/customers/{customer_uuid}/attributes/custom", json={"custom": [item]})
    assert response.status_code == 422
    assert response.json()["param"] == "custom" and why in response.json()["message"]


def test_put_of_a_key_the_customer_lacks_answers_422(api: httpx.Client, customer_uuid: str) -> None:
    response = api.put(f"/customers/{customer_uuid}/attributes/custom", json={"custom": {"new_key": 1}})
    assert response.status_code == 422


def test_delete_of_custom_attributes_answers_202_with_what_is_left(
    api: httpx.Client, customer_uuid: str
) -> None:
    api.post(f"/customers/{customer_uuid}/attributes/custom", json={"custom": TYPED[:2]}).raise_for_status()
    response = api.request(
        "DELETE", f"/customers/{customer_uuid}/attributes/custom", json={"custom": ["StringKey"]}
    )
    assert response.status_code == 202
    assert response.json() == {
        "custom": {"integer_key": 1234},
        "message": "Custom attributes deleted from customer",
    }


def test_attributes_of_an_unknown_customer_answer_404(api: httpx.Client) -> None:
    response = api.post("/customers/cus_nobody/attributes/tags", json={"tags": ["x"]})
    assert response.status_code == 404
