"""The DAG edge: what each task of both DAGs does, between Airflow and the Airflow-free steps.

Each function here takes the XCom values a task receives, turns them into mogulflow's typed
values (`mogulflow.xcom`), opens the warehouse and the ChartMogul client from their connections,
calls one step, and turns the result back into XCom. `resolve_window_task` and
`record_run_task` build the two tasks both DAGs share. The DAG files only wire these together.

Every task fails the same way (`_failing_clearly`): its one-line reason goes to XCom (`error`),
where `record_run` finds it for the run's account; a mistake (`failures.is_permanent`) fails the
task at once, without retries; an outage is re-raised for Airflow to retry.

Imported at DAG parse time: heavy imports stay inside the functions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from airflow.sdk import get_current_context, task

from mogulflow.xcom import Json

if TYPE_CHECKING:
    from mogulflow.account import RunAccount
    from mogulflow.api.client import ChartMogulClient
    from mogulflow.reports import ExtractReport, LoadReport
    from mogulflow.settings import MergeSettings, RunSettings
    from mogulflow.warehouse import Warehouse

log = logging.getLogger(__name__)

XCom = Json  # what a task receives from and hands to another

LEADS_TRIALS = "leads_trials"
CONVERSIONS = "conversions"
# The XCom key under which a failed task leaves its one-line reason.
ERROR_KEY = "error"

P = ParamSpec("P")
R = TypeVar("R")


def _failing_clearly(body: Callable[P, R]) -> Callable[P, R]:
    """Run a task's body; on an error, leave its reason for record_run and fail by its kind."""

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return body(*args, **kwargs)
        except Exception as error:
            from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

            from mogulflow.failures import describe, is_permanent

            if isinstance(error, AirflowSkipException):
                raise

            reason = str(error) if isinstance(error, AirflowFailException) else describe(error)
            get_current_context()["ti"].xcom_push(key=ERROR_KEY, value=reason)
            if is_permanent(error):
                raise AirflowFailException(reason) from error
            raise

    return run


@contextmanager
def _warehouse() -> Iterator[Warehouse]:
    from mogulflow.airflow_resources import open_warehouse

    warehouse = open_warehouse()
    try:
        yield warehouse
    finally:
        warehouse.close()


@contextmanager
def _client() -> Iterator[ChartMogulClient]:
    from mogulflow.airflow_resources import chartmogul_client

    with chartmogul_client() as client:
        yield client


def _run_settings(value: XCom) -> RunSettings:
    from mogulflow.settings import RunSettings
    from mogulflow.xcom import from_xcom

    return from_xcom(RunSettings, value)


def _merge_settings(value: XCom) -> MergeSettings:
    from mogulflow.settings import MergeSettings
    from mogulflow.xcom import from_xcom

    return from_xcom(MergeSettings, value)


# ---- the shared tasks -------------------------------------------------------------------------------


def resolve_window_task(kind: str) -> Callable[[], XCom]:
    """The `resolve_window` task: decide the run's window and settings from params and data interval."""

    @task(task_id="resolve_window", multiple_outputs=False, retries=0)
    @_failing_clearly
    def resolve_window() -> XCom:
        """Decide the run's window (data interval, start/end or full refresh) and settings."""
        from mogulflow import settings
        from mogulflow.xcom import to_xcom

        context = get_current_context()
        dag_run = context["dag_run"]
        resolve = settings.resolve_merge_settings if kind == CONVERSIONS else settings.resolve_settings
        resolved = resolve(
            context["params"],
            run_id=dag_run.run_id,
            dag_id=dag_run.dag_id,
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
        )
        run = resolved.run if isinstance(resolved, settings.MergeSettings) else resolved
        log.info(
            "Run %s: window %s, data source %r%s.",
            run.run_id,
            "every row (full refresh)"
            if run.window.full_refresh
            else f"[{run.window.start:%Y-%m-%d %H:%M}, {run.window.end:%Y-%m-%d %H:%M}) UTC",
            run.data_source_name,
            ", dry run" if run.dry_run else "",
        )
        return to_xcom(resolved)

    return resolve_window


def record_run_task(
    kind: str,
    *,
    data_source_task: str,
    extract_task: str,
    load_tasks: Mapping[str, str],
    also_required: Sequence[str] = (),
) -> Any:
    """The `record_run` task: add up the run, write `mogulflow_runs`, fail the run if anything failed.

    `load_tasks` maps an entity ("lead", "plan", ...) to the task that loads it; `also_required`
    names other tasks that must have succeeded. A task that did not succeed left no XCom (tasks
    cannot query the metadata DB in Airflow 3): its rows count as failed, and the run's message
    names it.
    """

    @task(task_id="record_run", trigger_rule="all_done", retries=0, multiple_outputs=False)
    def record_run(settings: XCom = None) -> XCom:
        """Write the run's account to mogulflow_runs; fail the run if anything failed."""
        from mogulflow import account, staging
        from mogulflow.model import Entity
        from mogulflow.reports import ExtractReport, LoadReport
        from mogulflow.xcom import from_xcom

        context = get_current_context()
        ti = context["ti"]
        run = _settings_of_run(kind, settings, context)
        required = ("resolve_window", *also_required, extract_task, *load_tasks.values())
        pulled = {name: ti.xcom_pull(task_ids=name) for name in (data_source_task, *required)}
        pulled["resolve_window"] = settings
        failures = [_did_not_finish(ti, name) for name in required if pulled[name] is None]
        extract = None if pulled[extract_task] is None else from_xcom(ExtractReport, pulled[extract_task])
        loads = {
            Entity(entity): None if pulled[name] is None else from_xcom(LoadReport, pulled[name])
            for entity, name in load_tasks.items()
        }
        rules = account.CONVERSIONS if kind == CONVERSIONS else account.LEADS_TRIALS
        result = account.summarize_run(run, rules, extract, loads, task_failures=failures)
        _leave_account_for_alerts(ti, result)
        with _warehouse() as warehouse:
            account.write_run(warehouse, result, data_source=(run.data_source_name, pulled[data_source_task]))
            if not result.failed:  # a failed run keeps its parts: its cleared tasks read them again
                staging.remove_run(warehouse, run.dag_id, run.run_id)
        if result.failed:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"run {run.run_id} failed: {result.summary.message}")
        return {"outcome": str(result.summary.outcome), "message": result.summary.message}

    return record_run


def _leave_account_for_alerts(ti: Any, result: RunAccount) -> None:
    """The run's account in XCom, where the DAG's alerts (`mogulflow.notifications`) read its counts;
    left before writing mogulflow_runs, so that an alert has the counts even if that write fails."""
    from mogulflow.notifications import ACCOUNT_XCOM_KEY
    from mogulflow.xcom import to_xcom

    ti.xcom_push(key=ACCOUNT_XCOM_KEY, value=to_xcom(result))


def _did_not_finish(ti: Any, task_id: str) -> str:
    reason = ti.xcom_pull(task_ids=task_id, key=ERROR_KEY)
    return f"task {task_id} did not finish" + (f": {reason}" if reason else "")


def _settings_of_run(kind: str, settings: XCom, context: Any) -> RunSettings:
    """The run's settings; when resolve_window failed (a param that makes no sense), an empty window
    at the run's start, so the failure is still recorded."""
    if settings is not None:
        return _merge_settings(settings).run if kind == CONVERSIONS else _run_settings(settings)
    from datetime import UTC, datetime

    from mogulflow.defaults import DEFAULT_DATA_SOURCE_NAME
    from mogulflow.model import Window
    from mogulflow.settings import RunSettings

    dag_run = context["dag_run"]
    now = datetime.now(UTC)
    name = context["params"].get("data_source_name") or DEFAULT_DATA_SOURCE_NAME
    return RunSettings(dag_run.run_id, dag_run.dag_id, Window(now, now), now, False, str(name), 0.0)


@_failing_clearly
def preflight(kind: str) -> XCom:
    """Check both connections, the API key, the source tables and columns, mogulflow's own tables;
    fail with every problem in one line (at once for mistakes, retried for an outage)."""
    from mogulflow.failures import Outage
    from mogulflow.model import SetupError
    from mogulflow.preflight import CONVERSION_ENTITIES, LEADS_TRIALS_ENTITIES, airflow_checks

    report = airflow_checks(CONVERSION_ENTITIES if kind == CONVERSIONS else LEADS_TRIALS_ENTITIES)
    for line in report.checked:
        log.info("ok: %s", line)
    if report.problems:
        raise (SetupError if report.permanent else Outage)(report.summary())
    log.info("Preflight: all %d checks passed.", len(report.checked))
    return {"checked": len(report.checked)}


# ---- chartmogul_leads_trials ------------------------------------------------------------------------


@_failing_clearly
def ensure_data_source(settings: XCom) -> str | None:
    """Find the run's data source by name; create it if missing (not in a dry run)."""
    from mogulflow import data_sources

    run = _run_settings(settings)
    with _client() as client:
        found = data_sources.ensure_data_source(client, run.data_source_name, dry_run=run.dry_run)
    log.info("Data source %r: %s.", run.data_source_name, found or "not created (dry run)")
    return found


@_failing_clearly
def extract_and_validate(settings: XCom, data_source_uuid: str | None) -> XCom:
    """Extract leads, plans and trials for the window and validate every row."""
    from mogulflow import sync
    from mogulflow.xcom import to_xcom

    with _warehouse() as warehouse:
        report = sync.extract_and_validate(warehouse, _run_settings(settings), data_source_uuid)
    _extracted(report)
    return to_xcom(report)


def _extracted(report: ExtractReport) -> None:
    """Report the source tables read (hook lineage) and log the extract's summary line."""
    from mogulflow.lineage import report_source_tables

    parts = list(report.parts.values())
    report_source_tables(part.entity.table for part in parts)
    log.info(
        "Extracted %d rows (%s): %d valid, %d rejected; staged for the next tasks.",
        sum(p.extracted for p in parts),
        ", ".join(f"{p.entity.table} {p.extracted}" for p in parts),
        sum(p.valid for p in parts),
        sum(p.rejected for p in parts),
    )


@_failing_clearly
def record_rejects(
    settings: XCom, data_source_uuid: str | None, report: XCom, *, merge: bool = False
) -> XCom:
    """Write the staged rejects to mogulflow_rejects; mark those waiting for their lead or plan."""
    from mogulflow.rejects import write_rejects
    from mogulflow.reports import ExtractReport
    from mogulflow.xcom import from_xcom, to_xcom

    run = _merge_settings(settings).run if merge else _run_settings(settings)
    with _warehouse() as warehouse:
        written = write_rejects(warehouse, run, from_xcom(ExtractReport, report), data_source_uuid)
    log.info("Recorded %d rejected rows in mogulflow_rejects (run_id=%s).", sum(written.values()), run.run_id)
    return to_xcom(written)


@_failing_clearly
def load_entity(entity: str, settings: XCom, data_source_uuid: str | None, report: XCom) -> XCom:
    """Plan and load one entity ("plan", "lead" or "trial"); a reject ratio above the limit fails
    the task at once (no retry can change it)."""
    from mogulflow import sync
    from mogulflow.entity_step import StepInputs
    from mogulflow.model import Entity
    from mogulflow.reports import ExtractReport
    from mogulflow.xcom import from_xcom, to_xcom

    if report is None:
        # upsert_customers runs even when upsert_plans failed, but not without an extract.
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("nothing to load: extract_and_validate did not finish")
    extract = from_xcom(ExtractReport, report)
    run = _run_settings(settings)
    with _warehouse() as warehouse, _client() as client:
        inputs = StepInputs(warehouse, client, run, data_source_uuid, extract)
        loaded = sync.load_entity(inputs, Entity(entity))
    _loaded(run, data_source_uuid, extract, loaded)
    return to_xcom(loaded)


def _loaded(
    run: RunSettings, data_source_uuid: str | None, extract: ExtractReport, loaded: LoadReport
) -> None:
    """Publish the load's asset event (its extra: the counts and rejects by rule) and its lineage."""
    from mogulflow.lineage import load_event_extra, publish_load_event, report_data_source_written

    extra = load_event_extra(run, data_source_uuid, extract.get(loaded.entity), loaded)
    publish_load_event(get_current_context(), str(loaded.entity), extra)
    if not run.dry_run:
        report_data_source_written(data_source_uuid)


# ---- chartmogul_merge_converted_leads ---------------------------------------------------------------


@_failing_clearly
def find_data_source(settings: XCom) -> str | None:
    """Find the leads' data source by name (never created here)."""
    from mogulflow import data_sources

    name = _merge_settings(settings).run.data_source_name
    with _client() as client:
        found = data_sources.find_data_source(client, name)
    if found is None:
        log.warning(
            "ChartMogul has no data source %r: no lead was synced there, so every conversion is rejected. "
            "Run chartmogul_leads_trials first, or set data_source_name.",
            name,
        )
    else:
        log.info("Data source %r: %s.", name, found)
    return found


@_failing_clearly
def extract_and_validate_conversions(settings: XCom, data_source_uuid: str | None) -> XCom:
    """Extract the window's conversions and validate every row."""
    from mogulflow.conversions import extract_and_validate_conversions as run_step
    from mogulflow.xcom import to_xcom

    with _warehouse() as warehouse:
        report = run_step(warehouse, _merge_settings(settings).run, data_source_uuid)
    _extracted(report)
    return to_xcom(report)


@_failing_clearly
def merge_customers(settings: XCom, data_source_uuid: str | None, report: XCom, lookup: XCom) -> XCom:
    """Merge each lead into its paying customer, once; record every outcome in the sync state."""
    from mogulflow.entity_step import log_outcome
    from mogulflow.merge import merge_conversions
    from mogulflow.paying_customers import LookupReport
    from mogulflow.reports import ExtractReport
    from mogulflow.xcom import from_xcom, to_xcom

    run = _merge_settings(settings).run
    extract = from_xcom(ExtractReport, report)
    with _warehouse() as warehouse, _client() as client:
        result = merge_conversions(
            warehouse, client, run, data_source_uuid, extract, from_xcom(LookupReport, lookup or {})
        )
    _loaded(run, data_source_uuid, extract, result)
    log_outcome(result)
    return to_xcom(result)
