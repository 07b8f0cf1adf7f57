"""`mogulflow.values.field_equality`: the one rule for "did this field change?"."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mogulflow.values.field_equality import changed_fields, same_value


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("2016-10-01 23:55:00 UTC", "2016-10-01T23:55:00.000Z"),
        ("2025-01-01T10:00:00Z", datetime(2025, 1, 1, 10, tzinfo=UTC)),
        (date(2025, 1, 1), "2025-01-01T00:00:00+00:00"),
        ("", None),
        (None, ""),
        ("  Acme ", "Acme"),
        (10, 10.0),
        (Decimal("19.90"), 19.9),
        ({"a": 1}, {"a": 1}),
    ],
)
def test_values_the_api_echoes_in_another_form_are_the_same(a, b):
    assert same_value(a, b)
    assert same_value(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z"),
        ("Acme", "acme"),
        ("", "x"),
        (0, None),
        (10, "10"),
        ("2025", "2025.0"),
    ],
)
def test_different_values_differ(a, b):
    assert not same_value(a, b)


def test_changed_fields_returns_the_current_values_that_differ():
    previous = {"name": "Acme", "city": "Bonn", "zip": None, "lead_created_at": "2025-01-01T10:00:00.000Z"}
    current = {"name": "Acme ", "city": "Berlin", "zip": "", "lead_created_at": "2025-01-01 10:00:00 UTC"}
    assert changed_fields(previous, current) == {"city": "Berlin"}


def test_a_field_missing_before_counts_as_changed_unless_empty():
    assert changed_fields({}, {"email": "a@acme.test", "zip": ""}) == {"email": "a@acme.test"}


def test_without_previous_every_field_but_the_skipped_ones_changed():
    current = {"external_id": "L1", "name": "Acme", "email": None}
    assert changed_fields(None, current) == current
    assert changed_fields(None, current, skip={"external_id"}) == {"name": "Acme", "email": None}


def test_skipped_fields_are_never_reported():
    previous = {"external_id": "L1", "attributes": {"tags": []}, "name": "Old"}
    current = {"external_id": "L2", "attributes": {"tags": ["x"]}, "name": "New"}
    assert changed_fields(previous, current, skip=("external_id", "attributes")) == {"name": "New"}
