"""Builders for sandbox tests: request bodies with sensible defaults, and small waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

TRIAL_START = "2025-01-01 00:00:00"
TRIAL_END = "2025-01-15 00:00:00"


def customer_body(data_source_uuid: str, external_id: str = "lead-1", **fields: Any) -> dict[str, Any]:
    """A valid customer create body; ``fields`` override or add (None values are kept, to send nulls)."""
    return {
        "data_source_uuid": data_source_uuid,
        "external_id": external_id,
        "name": "Jellytech",
        "email": "hello@jellytech.example",
        "country": "US",
        **fields,
    }


def plan_body(data_source_uuid: str, external_id: str = "plan-monthly", **fields: Any) -> dict[str, Any]:
    """A valid plan create body."""
    return {
        "data_source_uuid": data_source_uuid,
        "external_id": external_id,
        "name": "Monthly",
        "interval_count": 1,
        "interval_unit": "month",
        **fields,
    }


def trial_line_item(plan_uuid: str, external_id: str = "trial-1", **fields: Any) -> dict[str, Any]:
    """A free trial line item as the seed guide shows it."""
    return {
        "type": "trial",
        "amount_in_cents": 0,
        "quantity": 1,
        "external_id": external_id,
        "subscription_external_id": "sub-" + external_id,
        "plan_uuid": plan_uuid,
        "service_period_start": "2025-01-01T00:00:00.000Z",
        "service_period_end": "2025-01-15T00:00:00.000Z",
        **fields,
    }


def trial_invoice(plan_uuid: str, external_id: str = "inv-trial-1", **fields: Any) -> dict[str, Any]:
    """An invoice holding one trial line item (``line_item_external_id`` names the item)."""
    line_item_external_id = fields.pop("line_item_external_id", "li-" + external_id)
    return {
        "external_id": external_id,
        "date": TRIAL_START,
        "currency": "USD",
        "due_date": TRIAL_START,
        "line_items": [trial_line_item(plan_uuid, line_item_external_id)],
        **fields,
    }


def create_customer(
    api: httpx.Client, data_source_uuid: str, external_id: str = "lead-1", **fields: Any
) -> dict:
    """Create a customer through the API and return it (asserting the 201)."""
    response = api.post("/customers", json=customer_body(data_source_uuid, external_id, **fields))
    assert response.status_code == 201, response.text
    return response.json()


def create_plan(
    api: httpx.Client, data_source_uuid: str, external_id: str = "plan-monthly", **fields: Any
) -> dict:
    """Create a plan through the API and return it (asserting the 201)."""
    response = api.post("/plans", json=plan_body(data_source_uuid, external_id, **fields))
    assert response.status_code == 201, response.text
    return response.json()


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds.

    The sandbox's delayed work is due within a second: the timeout only ends a wait that would
    never end, so it is far longer than that, for a machine that is busy with other things.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class RateClock:
    """The clock of the sandbox's rate window, moved by hand: a second passes when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.start = self.now = start

    def __call__(self) -> float:
        return self.now
