"""Timestamps as ChartMogul reads and writes them.

Accepted on input: ``"2025-01-05 00:00:00"``, ``"2016-10-01 23:55:00 UTC"``, ISO 8601 with ``Z`` or an
offset (``"2019-09-03T07:22:39+06:00"``), fractional seconds, and plain dates (``"2025-01-05"``).
A timestamp without a zone is UTC. Output is ISO 8601 in UTC with milliseconds and ``Z``
(``"2016-10-01T23:55:00.000Z"``); ``customer-since`` uses the offset form (``"2016-01-01T12:00:00+00:00"``).
"""

from __future__ import annotations

from datetime import UTC, datetime

_UTC_SUFFIX = " UTC"


class TimestampError(ValueError):
    """A value that is not a timestamp ChartMogul would accept."""


def parse_timestamp(value: object) -> datetime:
    """Parse one accepted timestamp form into an aware UTC datetime, or raise `TimestampError`."""
    if not isinstance(value, str) or not value.strip():
        raise TimestampError(f"not a timestamp: {value!r}")
    text = value.strip()
    if text.endswith(_UTC_SUFFIX):
        text = text[: -len(_UTC_SUFFIX)]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise TimestampError(f"not a timestamp: {value!r}") from error
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime | None) -> str | None:
    """Render a UTC datetime the way ChartMogul answers: ``2016-10-01T23:55:00.000Z`` (None stays None)."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_offset_timestamp(moment: datetime | None) -> str | None:
    """Render a UTC datetime in the offset form of ``customer-since``: ``2016-01-01T12:00:00+00:00``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def utc_now() -> datetime:
    """The current moment as an aware UTC datetime."""
    return datetime.now(UTC)
