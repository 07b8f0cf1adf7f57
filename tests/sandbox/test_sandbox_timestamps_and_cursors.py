"""Unit rules: accepted timestamp forms, answer formats, cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mogulflow_sandbox.api_errors import ApiError
from mogulflow_sandbox.pagination import (
    PageRequest,
    decode_cursor,
    encode_cursor,
    paginate,
    read_page_request,
)
from mogulflow_sandbox.timestamps import (
    TimestampError,
    format_offset_timestamp,
    format_timestamp,
    parse_timestamp,
)

NOON = datetime(2025, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-05 12:00:00",
        "2025-01-05 12:00:00 UTC",
        "2025-01-05T12:00:00Z",
        "2025-01-05T12:00:00.000Z",
        "2025-01-05T18:00:00+06:00",
    ],
)
def test_accepted_timestamp_forms_read_as_utc(text: str) -> None:
    assert parse_timestamp(text) == NOON


def test_plain_date_reads_as_midnight_utc() -> None:
    assert parse_timestamp("2025-01-05") == datetime(2025, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "Tue Jan 05 2025", 1736078400, None])
def test_other_values_are_not_timestamps(value: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(value)


def test_answers_use_milliseconds_and_z() -> None:
    assert format_timestamp(NOON) == "2025-01-05T12:00:00.000Z"


def test_customer_since_uses_the_offset_form() -> None:
    assert format_offset_timestamp(NOON) == "2025-01-05T12:00:00+00:00"


def test_cursor_round_trips_its_position() -> None:
    assert decode_cursor(encode_cursor(42)) == 42


def test_page_after_a_cursor_starts_after_its_item() -> None:
    page = paginate([1, 3, 5, 7], int, PageRequest(per_page=2, after_position=3))

    assert (page.items, page.has_more) == ([5, 7], False)


def test_per_page_below_one_is_refused() -> None:
    with pytest.raises(ApiError) as raised:
        read_page_request({"per_page": "0"})

    assert raised.value.status == 400
