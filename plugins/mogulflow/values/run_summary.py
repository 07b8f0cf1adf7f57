"""The account of a run: how every row of each entity ended, the row errors, the outcome."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime

from mogulflow.values.entities import Entity, Window


@dataclass(frozen=True)
class EntityCounts:
    """How every extracted row of one entity ended; the numbers add up to `extracted`."""

    extracted: int = 0
    rejected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    # Objects deleted from ChartMogul (gone from the source, or erased): not extracted rows, so
    # outside the sum below.
    deleted: int = 0

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
