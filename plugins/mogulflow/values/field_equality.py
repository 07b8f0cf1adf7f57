"""Field comparison: THE rule for "did this field change?", shared by the planner and the transport.

A pure values module (no other mogulflow module, no Airflow, no HTTP): the planner diffs a payload
against the one last sent, the transport diffs it against the object ChartMogul returns, and both
must agree on what counts as a change, or one of them PATCHes what the other called unchanged.
The rule is tolerant where the API echoes a value in another form: timestamps compare as instants
(`"2016-10-01 23:55:00 UTC"` equals `"2016-10-01T23:55:00.000Z"`), an empty string equals null,
strings compare without surrounding blanks and numbers as numbers (`10` equals `10.0`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

#: A string only counts as a timestamp when it starts like one; "2025" or "12.5" never parse as dates.
_TIMESTAMP_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}")
#: Values that all mean "no value": the API answers null for a field we sent as "" and back.
_EMPTY: tuple[None, str] = (None, "")


def same_value(a: object, b: object) -> bool:
    """True when two field values mean the same thing (instants, "" and None, blanks, numbers)."""
    if a in _EMPTY and b in _EMPTY:
        return True
    left, right = _as_instant(a), _as_instant(b)
    if left is not None and right is not None:
        return left == right
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    if isinstance(a, (int, float, Decimal)) and isinstance(b, (int, float, Decimal)):
        return float(a) == float(b)
    return bool(a == b)


def changed_fields(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], *, skip: Collection[str] = ()
) -> dict[str, Any]:
    """The fields of `current` (keys not in `skip`) whose value is not `same_value` as in `previous`.

    Without a `previous`, every field of `current` but the skipped ones. The values returned are
    `current`'s: what a PATCH bringing `previous` up to date has to send.
    """
    if previous is None:
        return {key: value for key, value in current.items() if key not in skip}
    return {
        key: value
        for key, value in current.items()
        if key not in skip and not same_value(value, previous.get(key))
    }


def _as_instant(value: object) -> datetime | None:
    """The value as an aware UTC instant when it is a date, a datetime or an ISO-like timestamp."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not _TIMESTAMP_PREFIX.match(value.strip()):
        return None
    text = value.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


__all__ = ["changed_fields", "same_value"]
