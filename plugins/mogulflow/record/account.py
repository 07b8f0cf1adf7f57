"""Account: add up a run's rows, decide its outcome, and record it (the sync and the merge DAG alike).

Per entity: extracted = created + updated + unchanged + rejected + failed. Valid rows of an
entity whose load never ran (ratio exceeded, task failed) count as failed, so the sum always
holds. A run fails when a task did not finish, rows failed, the sum does not hold, or (where the
DAG limits rejects) an entity's rejects are too many (`mogulflow.values.reject_policy`: above
`max_reject_ratio`, from `min_rejects_to_fail` rows on); rejects alone give `success_with_rejects`,
and an entity above the ratio but below the floor is named in the run's details (`rejects_spared`),
where the rejects alert finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from mogulflow.values.deletions import Approval, DeleteReport
from mogulflow.values.entities import OPTIONAL_ENTITIES, Entity
from mogulflow.values.pipelines import AccountRules
from mogulflow.values.reject_policy import RejectVerdict, describe_rejects, judge_rejects
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.run_summary import EntityCounts, RowError, RunOutcome, RunSummary
from mogulflow.values.step_reports import DryRunSamples, ExtractReport, LoadReport, LookupStats, RedateReport
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.run_records import record_run

log = logging.getLogger(__name__)

# How many row errors per entity the run's details keep (the load reports carry more).
ERRORS_IN_DETAILS = 10


@dataclass(frozen=True)
class RunDetails:
    """What the run's account keeps beyond the counts (`mogulflow_runs.details`, as JSON)."""

    rejects_by_rule: Mapping[Entity, Mapping[str, int]] = field(default_factory=dict)
    api_errors: Mapping[Entity, tuple[RowError, ...]] = field(default_factory=dict)
    dry_run_samples: Mapping[Entity, DryRunSamples] = field(default_factory=dict)
    lead_dates_from_later_trials: RedateReport | None = None
    lookup: LookupStats | None = None
    # Entities above max_reject_ratio with fewer rejects than min_rejects_to_fail: loaded, alerted on.
    rejects_spared: Mapping[Entity, str] = field(default_factory=dict)
    # Deletes: the guard's answer, a few ids deleted (or, in a dry run, that would be) per entity, the
    # deletes that failed, and what a person must handle (erasures of merged leads).
    delete_approval: Approval | None = None
    deletes_held_back: int = 0  # mirror deletes planned but not approved
    deleted_ids: Mapping[Entity, tuple[str, ...]] = field(default_factory=dict)
    would_delete: Mapping[Entity, tuple[str, ...]] = field(default_factory=dict)
    delete_errors: tuple[RowError, ...] = ()
    delete_notes: tuple[str, ...] = ()
    erasures_for_a_person: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunAccount:
    """The run's summary (counts and outcome) and its details."""

    summary: RunSummary
    details: RunDetails

    @property
    def failed(self) -> bool:
        """Whether the run ended failed."""
        return self.summary.outcome is RunOutcome.FAILED


def summarize_run(
    settings: RunSettings,
    rules: AccountRules,
    extract: ExtractReport | None,
    loads: Mapping[Entity, LoadReport | None],
    *,
    task_failures: Sequence[str] = (),
    finished_at: datetime | None = None,
    deletes: DeleteReport | None = None,
) -> RunAccount:
    """Add up every entity's rows and decide the run's outcome (and count the deletes, when the DAG
    deletes: they are objects, not extracted rows, so outside the sum)."""
    counts: dict[Entity, EntityCounts] = {}
    problems: list[str] = list(task_failures)
    rejects_by_rule: dict[Entity, Mapping[str, int]] = {}
    api_errors: dict[Entity, tuple[RowError, ...]] = {}
    samples: dict[Entity, DryRunSamples] = {}
    redated: RedateReport | None = None
    lookup: LookupStats | None = None
    spared: dict[Entity, str] = {}
    for entity in rules.entities:
        part = extract.get(entity) if extract is not None else None
        if part is None:
            if entity not in OPTIONAL_ENTITIES:  # an optional table that is not there: the feature is off
                counts[entity] = EntityCounts()
            continue
        load = loads.get(entity)
        verdict = judge_rejects(part, settings) if rules.limits_rejects else RejectVerdict.WITHIN
        if verdict is RejectVerdict.TOO_MANY:
            problems.append(f"{entity}: {describe_rejects(part, settings)}")
        elif verdict is RejectVerdict.SPARED:
            spared[entity] = describe_rejects(part, settings)
        if load is None:
            load = LoadReport(entity, failed=part.valid)
        else:
            problems.extend(load.problems)
            if load.errors:
                api_errors[entity] = load.errors[:ERRORS_IN_DETAILS]
            if load.samples is not None:
                samples[entity] = load.samples
            if load.redated is not None and (load.redated.updated or load.redated.failed):
                redated = load.redated
            lookup = load.lookup or lookup
        entity_counts = EntityCounts(
            extracted=part.extracted,
            rejected=part.rejected,
            created=load.created,
            updated=load.updated,
            unchanged=load.unchanged,
            failed=load.failed,
        )
        if entity_counts.accounted != entity_counts.extracted:
            problems.append(
                f"{entity}: counts do not add up: extracted {entity_counts.extracted} but "
                f"{entity_counts.accounted} accounted for"
            )
        counts[entity] = entity_counts
        if part.rejects_by_rule:
            rejects_by_rule[entity] = part.rejects_by_rule
    if extract is None and not problems:
        problems.append("extraction did not finish")
    notes: tuple[str, ...] = ()
    if deletes is not None:
        for entity, deleted in deletes.deleted.items():
            counts[entity] = replace(counts.get(entity, EntityCounts()), deleted=deleted)
        problems.extend(deletes.problems)
        notes = deletes.notes
    rejected = sum(c.rejected for c in counts.values())
    if problems:
        outcome, message = RunOutcome.FAILED, "; ".join(problems)
    elif rejected:
        outcome = RunOutcome.SUCCESS_WITH_REJECTS
        message = f"{rejected} {rules.rows_word} rejected: see mogulflow_rejects"
        if spared:
            message += "; " + "; ".join(f"{entity}: {sentence}" for entity, sentence in spared.items())
    else:
        outcome, message = RunOutcome.SUCCESS, rules.all_done
    if notes:
        message += "; " + "; ".join(notes)
    summary = RunSummary(
        run_id=settings.run_id,
        dag_id=settings.dag_id,
        window=settings.window,
        started_at=settings.started_at,
        finished_at=finished_at or datetime.now(UTC),
        dry_run=settings.dry_run,
        outcome=outcome,
        counts=counts,
        message=message,
    )
    details = RunDetails(rejects_by_rule, api_errors, samples, redated, lookup, spared)
    if deletes is not None:
        details = replace(
            details,
            delete_approval=deletes.approval,
            deletes_held_back=deletes.held_back,
            deleted_ids={} if deletes.dry_run else deletes.samples,
            would_delete=deletes.samples if deletes.dry_run else {},
            delete_errors=deletes.errors[:ERRORS_IN_DETAILS],
            delete_notes=deletes.notes,
            erasures_for_a_person=deletes.erasures_for_a_person,
        )
    return RunAccount(summary, details)


def write_run(warehouse: Warehouse, account: RunAccount, *, data_source: tuple[str, str | None]) -> None:
    """Record the run's account in `mogulflow_runs` and log it."""
    summary = account.summary
    ensure_tables(warehouse)
    record_run(warehouse, summary, details=account.details, data_source=data_source)
    level = logging.WARNING if summary.outcome is not RunOutcome.SUCCESS else logging.INFO
    log.log(level, "Run %s ended %s: %s", summary.run_id, summary.outcome, summary.message)
    for entity, c in summary.counts.items():
        log.log(
            level,
            "  %-6s extracted %d = created %d + updated %d + unchanged %d + rejected %d + failed %d; "
            "deleted %d",
            entity,
            c.extracted,
            c.created,
            c.updated,
            c.unchanged,
            c.rejected,
            c.failed,
            c.deleted,
        )
