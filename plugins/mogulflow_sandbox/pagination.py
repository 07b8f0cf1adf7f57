"""Cursor pagination as the list endpoints answer it.

``per_page`` defaults to 200 and is capped at 200; ``cursor`` is opaque (base64 of the position of the
last item sent). The first page (no cursor given) also carries the deprecated ``per_page``, ``page``,
``current_page`` and ``total_pages`` keys, as the 2023 recording shows; the ``page`` parameter itself
is refused with 400.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mogulflow_sandbox.api_errors import coded_error, invalid_parameter

DEFAULT_PER_PAGE = 200
MAX_PER_PAGE = 200

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class PageRequest:
    """What a list request asked for: items after ``after_position`` (None = from the start)."""

    per_page: int = DEFAULT_PER_PAGE
    after_position: int | None = None

    @property
    def is_first_page(self) -> bool:
        """True when no cursor was given."""
        return self.after_position is None


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of items, the cursor to the next one and how many items matched in all."""

    items: list[ItemT]
    cursor: str | None
    has_more: bool
    total: int


def read_page_request(query: Mapping[str, str]) -> PageRequest:
    """Parse ``per_page``/``cursor``; the deprecated ``page`` parameter is a 400 as the API answers."""
    if "page" in query:
        raise coded_error(400, 'Parameter "page" is deprecated', "page")
    per_page = DEFAULT_PER_PAGE
    if "per_page" in query:
        try:
            per_page = int(query["per_page"])
        except ValueError:
            raise invalid_parameter("per_page") from None
        if per_page < 1:
            raise invalid_parameter("per_page")
    after_position = None
    if query.get("cursor"):
        after_position = decode_cursor(query["cursor"])
    return PageRequest(per_page=min(per_page, MAX_PER_PAGE), after_position=after_position)


def encode_cursor(position: int) -> str:
    """An opaque cursor pointing after the item at ``position``."""
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The position a cursor of `encode_cursor` points after; anything else is a 400."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, _, position = text.partition(":")
        if prefix != "after":
            raise ValueError(cursor)
        return int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_parameter("cursor") from None


def paginate(
    items: Sequence[ItemT], position_of: Callable[[ItemT], int], request: PageRequest
) -> Page[ItemT]:
    """Cut one page from ``items`` sorted by ascending position."""
    start = 0
    if request.after_position is not None:
        start = bisect.bisect_right(items, request.after_position, key=position_of)
    chosen = list(items[start : start + request.per_page])
    has_more = start + request.per_page < len(items)
    cursor = encode_cursor(position_of(chosen[-1])) if chosen else None
    return Page(items=chosen, cursor=cursor, has_more=has_more, total=len(items))


def page_body(
    container_key: str, entries: list[Any], page: Page[Any], request: PageRequest, empty_total_pages: int = 1
) -> dict[str, Any]:
    """The list answer: entries, ``cursor``, ``has_more``, plus the deprecated keys on a first page.

    ``empty_total_pages``: recordings show ``total_pages`` 1 for an empty customer list, 0 for invoices.
    """
    body: dict[str, Any] = {container_key: entries}
    if request.is_first_page:
        body |= {
            "current_page": 1,
            "total_pages": math.ceil(page.total / request.per_page) if page.total else empty_total_pages,
            "per_page": request.per_page,
            "page": 1,
        }
    body |= {"cursor": page.cursor, "has_more": page.has_more}
    return body
