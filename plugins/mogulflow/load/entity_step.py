"""The entity step: plans, customers and trial invoices all go through `run_entity_step`.

One pass, one way: read the staged valid rows → read the sync state (rebuilding it from the API on
first contact) → build payloads and plan against the state → load (bulk first when there are
many new objects, then per object) → report. What differs per entity is a small `EntitySpec`:
how to plan, whether bulk applies, how to load (see `mogulflow.sync.leads_trials` for the three specs).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.load.bulk import BulkOutcome, uses_bulk
from mogulflow.load.first_contact import rebuild_customer_state
from mogulflow.load.objects import load_objects
from mogulflow.load.read_back import read_back_uuids
from mogulflow.plan.sync_plan import PlanCounts, SyncPlan
from mogulflow.transform.payloads import customer_fields_from_api
from mogulflow.values.constants import SAMPLE_SIZE
from mogulflow.values.entities import Entity
from mogulflow.values.errors import RejectRatioExceeded
from mogulflow.values.reject_policy import RejectVerdict, describe_rejects, judge_rejects
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import (
    DryRunSamples,
    ExtractReport,
    LoadReport,
    RedateReport,
    StagedExtract,
)
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.sync_state import HeldState, StateSource, StoredState, checkpoint_to, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInputs:
    """What every entity step works with."""

    warehouse: Warehouse
    client: ChartMogulClient
    settings: RunSettings
    data_source_uuid: str | None
    extract: ExtractReport

    @property
    def workers(self) -> int:
        """Parallel writes: as many as the connection allows."""
        return max(1, int(self.client.settings.max_connections or 1))


@dataclass(frozen=True)
class PlannedLoad:
    """What one step will do: the plan of this run's rows, and (leads only) the re-dating of earlier
    leads, kept apart because those rows are not part of this run's account."""

    plan: SyncPlan
    redate: SyncPlan | None = None
    # Set when `plan` keeps only samples (a dry run planned chunk by chunk): the full counts.
    counts: PlanCounts | None = None


@dataclass(frozen=True)
class EntitySpec:
    """How one entity differs: how it plans, whether it has a bulk path, how it loads."""

    entity: Entity
    # Plans against the state of its own rows only (`StateSource.entries`), never the whole account's.
    plan: Callable[[StepInputs, StateSource], PlannedLoad]
    load: Callable[[StepInputs, str, SyncPlan], LoadReport]
    # Creates the plan's new rows through JSON imports (and reads back the uuids it lacks).
    bulk: Callable[[StepInputs, str, SyncPlan], BulkOutcome] | None = None
    # An empty state with rows to send may mean a lost state table: learn what the API holds first.
    rebuild_on_first_contact: bool = False


def check_reject_ratio(settings: RunSettings, part: StagedExtract) -> None:
    """Raise `RejectRatioExceeded` when the entity's rejects fail the run (`mogulflow.values.reject_policy`:
    above `max_reject_ratio`, from `min_rejects_to_fail` rows on); below the floor, say so and load."""
    verdict = judge_rejects(part, settings)
    if verdict is RejectVerdict.SPARED:
        log.warning(
            "%s. See mogulflow_rejects for run_id=%s: %s",
            describe_rejects(part, settings),
            settings.run_id,
            dict(part.rejects_by_rule),
        )
    if verdict is RejectVerdict.TOO_MANY:
        raise RejectRatioExceeded(
            f"{describe_rejects(part, settings)} (min_rejects_to_fail {settings.min_rejects_to_fail}); "
            f"not loading {part.entity}s. See mogulflow_rejects for run_id={settings.run_id}: "
            f"{dict(part.rejects_by_rule)}"
        )


def run_entity_step(spec: EntitySpec, inputs: StepInputs) -> LoadReport:
    """Plan and load one entity's valid rows of the run; the report says how every row ended."""
    settings, warehouse, ds = inputs.settings, inputs.warehouse, inputs.data_source_uuid
    part = inputs.extract[spec.entity]
    check_reject_ratio(settings, part)
    state: StateSource = StoredState(warehouse, spec.entity, ds) if ds else HeldState({})
    if spec.rebuild_on_first_contact and ds and part.valid and not state.size:
        rebuilt = rebuild_customer_state(
            inputs.client, data_source_uuid=ds, run_id=settings.run_id, fields_of=customer_fields_from_api
        )
        if rebuilt:
            log.info(
                "Sync state was empty; %d customers found in the data source: comparing, not creating.",
                len(rebuilt),
            )
            if not settings.dry_run:
                save_state(warehouse, list(rebuilt.values()))
            state = HeldState(rebuilt)
    planned = spec.plan(inputs, state)
    del state  # the plan holds what the load needs
    if settings.dry_run:
        return _dry_run_report(planned)
    if not ds:
        raise RuntimeError("no ChartMogul data source uuid: the ensure_data_source task must run first")
    plan, report = planned.plan, None
    if spec.bulk is not None and uses_bulk(len(plan.creates)):
        log.info("%d new %s rows: creating them through JSON imports.", len(plan.creates), spec.entity)
        bulk = spec.bulk(inputs, ds, plan)
        plan, report = dataclasses.replace(plan, creates=bulk.leftover, missing_uuids=()), bulk.report
    if plan.missing_uuids:
        # Confirmed by an import whose uuids were not read back (a killed task): one listing does it.
        log.info(
            "%d %s rows have no ChartMogul uuid yet: reading them back.", len(plan.missing_uuids), spec.entity
        )
        checkpoint_to(warehouse)(read_back_uuids(inputs.client, ds, plan.missing_uuids))
    loaded = spec.load(inputs, ds, plan)
    report = loaded if report is None else report.plus(loaded)
    redated = None
    if planned.redate is not None:
        if planned.redate.updates:
            log.info(
                "%d leads synced earlier get their lead date from a trial of this run.",
                len(planned.redate.updates),
            )
        again = load_objects(
            inputs.client,
            planned.redate,
            data_source_uuid=ds,
            run_id=settings.run_id,
            checkpoint=checkpoint_to(warehouse),
            max_workers=1,
        )
        errors = tuple(f"{e.external_id}: {e.message}" for e in again.errors[:SAMPLE_SIZE])
        redated = RedateReport(updated=again.updated, failed=again.failed, errors=errors)
    return _finished(report, redated)


def _finished(report: LoadReport, redated: RedateReport | None) -> LoadReport:
    """The report with the problems that fail the run, logged as the step's last line."""
    problems = []
    if report.aborted:
        problems.append(f"{report.entity} load stopped early: {report.aborted}")
    if report.failed:
        problems.append(f"{report.entity}: {report.failed} rows failed and will be retried by the next run")
        log.warning(
            "%s: %d rows failed; the next run retries them. First errors: %s",
            report.entity,
            report.failed,
            [f"{e.external_id}: {e.message}" for e in report.errors[:SAMPLE_SIZE]],
        )
    if redated is not None and redated.failed:
        problems.append(
            f"{redated.failed} earlier leads could not get their lead date from a new trial; "
            "the next run retries them"
        )
    report = dataclasses.replace(report, problems=tuple(problems), redated=redated)
    log_outcome(report)
    return report


def log_outcome(report: LoadReport) -> None:
    """One line that says how the entity's load ended: what the grid's log view shows last."""
    counts = (
        f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}, "
        f"failed {report.failed}"
    )
    if report.problems:
        log.warning("%s: %s. Problems: %s", report.entity, counts, "; ".join(report.problems))
    else:
        log.info("%s: %s%s.", report.entity, counts, " (dry run: nothing written)" if report.dry_run else "")


def _dry_run_report(planned: PlannedLoad) -> LoadReport:
    plan = planned.plan
    counts = planned.counts or PlanCounts(len(plan.creates), len(plan.updates), len(plan.unchanged))
    log.info(
        "Dry run, %s: would create %d, would update %d, unchanged %d",
        plan.entity,
        counts.creates,
        counts.updates,
        counts.unchanged,
    )
    samples = DryRunSamples(
        create=tuple(c.payload.external_id for c in plan.creates[:SAMPLE_SIZE]),
        update={u.payload.external_id: tuple(sorted(u.changed_fields)) for u in plan.updates[:SAMPLE_SIZE]},
        unchanged=tuple(plan.unchanged[:SAMPLE_SIZE]),
    )
    redated = None if planned.redate is None else RedateReport(updated=len(planned.redate.updates))
    report = LoadReport(
        plan.entity,
        created=counts.creates,
        updated=counts.updates,
        unchanged=counts.unchanged,
        dry_run=True,
        samples=samples,
        redated=redated,
    )
    log_outcome(report)
    return report
