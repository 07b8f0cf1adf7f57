"""Rejected rows: the field, the rule and what was found, per broken rule.

Rejected rows: what validation makes of a row that breaks a rule: the field, the rule and what
was found, and whether the row only waits for its lead or plan.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import pandas as pd

from mogulflow.values.entities import Entity


@dataclass(frozen=True)
class RejectedRow:
    """One source row that failed validation, with every rule it broke.

    `reason` is the human-readable account stored in `mogulflow_rejects.reason`, e.g.
    "email: must be a valid email address (found 'bob@'); country: must be an ISO 3166-1
    alpha-2 code (found 'XX')". `source_id` is None when the row had no id.
    """

    entity: Entity
    source_id: str | None
    reason: str
    # the failing rules, one per (field, rule): field name ("" for row-level rules), rule, found value
    failures: tuple[RuleFailure, ...] = ()


class RuleKind(enum.StrEnum):
    """What kind of rule a row broke: decides what becomes of the row, not just how it reads."""

    MISSING = "missing"  # a required value is absent
    INVALID = "invalid"  # a value breaks a rule of its own (format, range, order, future)
    DUPLICATE = "duplicate"  # another row with the same id won
    # names a lead or plan that is not known yet: the row waits, and is re-read once it is known
    UNKNOWN_PARENT = "unknown_parent"


@dataclass(frozen=True)
class RuleFailure:
    """One broken rule on one row: which field, which rule, what was found.

    `kind` classifies the rule (e.g. an unknown parent makes the row wait); two failures are equal
    when they read the same, whatever their kind.
    """

    field: str
    rule: str
    found: str | None
    kind: RuleKind = dataclass_field(default=RuleKind.INVALID, compare=False)

    def describe(self) -> str:
        """`field: rule (found 'x')`: the form used inside `RejectedRow.reason`."""
        found = "missing" if self.found is None else repr(self.found)
        prefix = f"{self.field}: " if self.field else ""
        return f"{prefix}{self.rule} (found {found})"


@dataclass(frozen=True)
class ValidationResult:
    """What validating one entity's extract gives: the rows to send and the rows to quarantine.

    `valid` keeps the source columns, normalised (texts stripped and blank → missing, country and
    currency upper-cased), one row per id. `extracted` counts the rows that came in, duplicates
    included, so that `len(valid) + len(rejected) == extracted`.
    """

    entity: Entity
    valid: pd.DataFrame
    rejected: tuple[RejectedRow, ...]
    extracted: int

    @property
    def reject_ratio(self) -> float:
        """Rejected ÷ extracted (0 for an empty extract)."""
        return len(self.rejected) / self.extracted if self.extracted else 0.0


def waits_for_parent(reject: RejectedRow) -> bool:
    """Whether a row was rejected only because the lead or plan it names is not known yet.

    Such a row is worth reading again once its parent arrives, unlike a row with a bad value.
    """
    return (
        reject.source_id is not None
        and bool(reject.failures)
        and all(failure.kind is RuleKind.UNKNOWN_PARENT for failure in reject.failures)
    )
