"""Identifiers the sandbox hands out: prefixed uuids (``cus_…``, ``inv_…``) and running numbers."""

from __future__ import annotations

import uuid


def new_uuid(prefix: str) -> str:
    """A fresh id in the API's form, e.g. ``cus_<uuid4>``."""
    return f"{prefix}_{uuid.uuid4()}"


def is_prefixed_uuid(value: str, prefix: str) -> bool:
    """True when ``value`` is ``<prefix>_<uuid>``, the only form the API looks up at all."""
    if not value.startswith(prefix + "_"):
        return False
    try:
        uuid.UUID(value[len(prefix) + 1 :])
    except ValueError:
        return False
    return True


class RunningNumber:
    """Hands out 1, 2, 3, …; ``next`` is what the state file keeps so numbers never repeat."""

    def __init__(self, next_number: int = 1) -> None:
        self.next = next_number

    def take(self) -> int:
        """The next number, used up."""
        number = self.next
        self.next += 1
        return number
