"""Reports: the values one task hands the next (through XCom, see `mogulflow.values.json_form`).

extract_and_validate → `ExtractReport` (per entity: counts, rejects by rule, staged files);
each load step → `LoadReport` (per entity: created / updated / unchanged / failed, errors, the
problems that fail the run); record_run adds them up into the run's account (`mogulflow.record.account`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mogulflow.values.constants import ERRORS_KEPT
from mogulflow.values.entities import Entity
from mogulflow.values.run_summary import RowError


@dataclass(frozen=True)
class StagedExtract:
    """One entity's validated extract: its counts, and where its valid rows and rejects are staged."""

    entity: Entity
    extracted: int
    valid: int
    rejected: int
    rejects_by_rule: Mapping[str, int]
    valid_path: str
    rejects_path: str

    @property
    def reject_ratio(self) -> float:
        """Rejected ÷ extracted (0 for an empty extract)."""
        return self.rejected / self.extracted if self.extracted else 0.0


@dataclass(frozen=True)
class ExtractReport:
    """What extract_and_validate staged, per entity."""

    parts: Mapping[Entity, StagedExtract]

    def __getitem__(self, entity: Entity) -> StagedExtract:
        return self.parts[entity]

    def get(self, entity: Entity) -> StagedExtract | None:
        """The entity's part, or None when this run did not extract it."""
        return self.parts.get(entity)


@dataclass(frozen=True)
class DryRunSamples:
    """A few external ids of what a dry run would do: create, update (with the changed fields), leave."""

    create: tuple[str, ...] = ()
    update: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unchanged: tuple[str, ...] = ()


@dataclass(frozen=True)
class RedateReport:
    """Leads of earlier runs that got their lead date from a trial of this run (outside its account)."""

    updated: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LookupStats:
    """How long the merge DAG looked for paying customers."""

    polls: int = 0
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class LoadReport:
    """What one entity's load did; created + updated + unchanged + failed covers its valid rows.

    `problems` are the sentences that make the run fail (rows failed, the load stopped early);
    the account adds them to the run's message.
    """

    entity: Entity
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: tuple[RowError, ...] = ()
    aborted: str | None = None  # why the load stopped early, if it did
    dry_run: bool = False
    problems: tuple[str, ...] = ()
    samples: DryRunSamples | None = None
    redated: RedateReport | None = None
    lookup: LookupStats | None = None

    @property
    def done(self) -> int:
        """Rows with an outcome."""
        return self.created + self.updated + self.unchanged + self.failed

    def plus(self, other: LoadReport) -> LoadReport:
        """Two partial loads of one entity (bulk, then per object) as one report."""
        return LoadReport(
            self.entity,
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            failed=self.failed + other.failed,
            errors=(self.errors + other.errors)[:ERRORS_KEPT],
            aborted=self.aborted or other.aborted,
        )
