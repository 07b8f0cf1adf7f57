"""Entities and windows: which kind of source row, and which slice of the rows a run reads.

Entities and windows: which kind of source row (lead, plan, trial, conversion), and which slice of
the source rows a run reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Entity(enum.StrEnum):
    """A kind of source row; the value is what `mogulflow_rejects.entity` holds."""

    LEAD = "lead"
    PLAN = "plan"
    TRIAL = "trial"
    CONVERSION = "conversion"
    ATTRIBUTE = "attribute"  # a custom attribute of a lead's customer (optional table lead_attributes)
    TAG = "tag"  # a tag of a lead's customer (optional table lead_tags)

    @property
    def id_column(self) -> str:
        """The source column that identifies a row of this entity."""
        return _ID_COLUMNS[self]

    @property
    def table(self) -> str:
        """The source table the default SQL reads this entity from."""
        return _TABLES.get(self, f"{self.value}s")


#: What a lead still owns once its customer holds other records too (merged into its paying customer, by
#: mogulflow or by ChartMogul): the funnel dates; the rest of the profile is the merged customer's.
LEAD_DATE_FIELDS = ("lead_created_at", "free_trial_started_at")

_ID_COLUMNS = {
    Entity.LEAD: "lead_id",
    Entity.PLAN: "plan_id",
    Entity.TRIAL: "trial_id",
    Entity.CONVERSION: "lead_id",
    Entity.ATTRIBUTE: "lead_id",
    Entity.TAG: "lead_id",
}
_TABLES = {Entity.ATTRIBUTE: "lead_attributes", Entity.TAG: "lead_tags"}

#: Entities whose source table is optional: a warehouse without it syncs as before, the feature off.
OPTIONAL_ENTITIES = (Entity.ATTRIBUTE, Entity.TAG)


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
