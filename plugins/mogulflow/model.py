"""Values that cross mogulflow's steps (extract → validate → transform → plan → load → record).

Everything here is a frozen dataclass or an enum: plain data, no I/O, no Airflow.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime

import pandas as pd


class Entity(enum.StrEnum):
    """A kind of source row; the value is what `mogulflow_rejects.entity` holds."""

    LEAD = "lead"
    PLAN = "plan"
    TRIAL = "trial"
    CONVERSION = "conversion"

    @property
    def id_column(self) -> str:
        """The source column that identifies a row of this entity."""
        return _ID_COLUMNS[self]

    @property
    def table(self) -> str:
        """The source table the default SQL reads this entity from."""
        return f"{self.value}s"


_ID_COLUMNS = {
    Entity.LEAD: "lead_id",
    Entity.PLAN: "plan_id",
    Entity.TRIAL: "trial_id",
    Entity.CONVERSION: "lead_id",
}


@dataclass(frozen=True)
class Window:
    """The slice of source rows one run reads: `[start, end)` on `updated_at`, or everything."""

    start: datetime | None
    end: datetime | None
    full_refresh: bool = False

    def __post_init__(self) -> None:
        if not self.full_refresh and (self.start is None or self.end is None):
            raise ValueError("an incremental window needs both start and end (or full_refresh=True)")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"window start {self.start.isoformat()} is after its end {self.end.isoformat()}")


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


@dataclass(frozen=True)
class EntityCounts:
    """How every extracted row of one entity ended; the numbers add up to `extracted`."""

    extracted: int = 0
    rejected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0

    @property
    def accounted(self) -> int:
        """Rows with a known outcome; equals `extracted` when nothing was lost."""
        return self.rejected + self.created + self.updated + self.unchanged + self.failed


@dataclass(frozen=True)
class RowError:
    """A row the API refused or that failed after all retries: the row, the error, the status."""

    entity: Entity
    external_id: str
    message: str
    status: int | None = None
    retriable: bool = True


class RunOutcome(enum.StrEnum):
    """How a run ended, as `mogulflow_runs.outcome` holds it."""

    SUCCESS = "success"
    SUCCESS_WITH_REJECTS = "success_with_rejects"  # everything valid was synced; some rows rejected
    FAILED = "failed"  # rows failed, a task did not finish, or too many rows were rejected


@dataclass(frozen=True)
class RunSummary:
    """The account of one run, written to `mogulflow_runs` and printed by `make run`."""

    run_id: str
    dag_id: str
    window: Window
    started_at: datetime
    finished_at: datetime
    dry_run: bool
    outcome: RunOutcome
    counts: Mapping[Entity, EntityCounts] = dataclass_field(default_factory=dict)
    message: str = ""


class SetupError(ValueError):
    """A mistake in the setup (a connection, a table or column, the SQL, a param) that no retry can
    fix. Its message says what is wrong and what to do, in one line."""
