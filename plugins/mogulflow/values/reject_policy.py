"""The rejects rule: when an entity's rejected rows fail the run, and when they are only reported.

Two params decide it together: `max_reject_ratio` (the share of an entity's extracted rows that may
be rejected) and `min_rejects_to_fail` (how many rejected rows it takes before that share can fail a
run). A share above the ratio fails the run, and the entity is not loaded, only when at least the
floor's number of rows were rejected; below the floor the rows are rejected, reported and alerted on,
the rest is loaded, and the run ends `success_with_rejects`. The floor relaxes the ratio for small
counts only: from `min_rejects_to_fail` rejected rows on, the ratio decides exactly as before.
"""

from __future__ import annotations

import enum

from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import StagedExtract


class RejectVerdict(enum.StrEnum):
    """What an entity's rejects mean for the run."""

    WITHIN = "within"  # at or below max_reject_ratio: loaded
    SPARED = "spared"  # above max_reject_ratio, but fewer rows than min_rejects_to_fail: loaded, alerted
    TOO_MANY = "too_many"  # above max_reject_ratio, at least min_rejects_to_fail rows: not loaded, run fails


def judge_rejects(part: StagedExtract, settings: RunSettings) -> RejectVerdict:
    """The verdict on one entity's rejects under the run's `max_reject_ratio` and `min_rejects_to_fail`."""
    if part.reject_ratio <= settings.max_reject_ratio:
        return RejectVerdict.WITHIN
    if part.rejected < settings.min_rejects_to_fail:
        return RejectVerdict.SPARED
    return RejectVerdict.TOO_MANY


def describe_rejects(part: StagedExtract, settings: RunSettings) -> str:
    """One sentence on an entity above `max_reject_ratio`: why it fails the run, or why it does not."""
    share = (
        f"{part.rejected} of {part.extracted} {part.entity} rows rejected ({100 * part.reject_ratio:.1f}%), "
        f"above max_reject_ratio {100 * settings.max_reject_ratio:.1f}%"
    )
    if judge_rejects(part, settings) is RejectVerdict.SPARED:
        return (
            f"{share}, but fewer than min_rejects_to_fail ({settings.min_rejects_to_fail}) rows: "
            f"loaded, the rejects reported"
        )
    return f"{share}: not loaded"
