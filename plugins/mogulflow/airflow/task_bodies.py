"""Task bodies: what every task of every DAG does, each behind the one edge, `task_body`.

A body is a typed function: the task's resources first, then the values it receives through XCom
(its settings, the data source, an upstream report), then, keyword-only, what the DAG file fixes when
it wires the task (the pipeline, the entity). `task_body` turns it into what Airflow calls: XCom JSON
in, decoded by the body's own type hints; the typed report out, as JSON; one failure policy. The
bodies call the Airflow-free steps and add only what needs Airflow (context, XCom, lineage).

Imported when a task runs, not when a DAG file is parsed (`mogulflow.airflow.tasks` says why).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from airflow.sdk import get_current_context

try:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 3.1 has them in airflow.exceptions only
    from airflow.exceptions import AirflowFailException, AirflowSkipException

from mogulflow.airflow.hook import ChartMogulHook
from mogulflow.airflow.lineage import (
    load_event_extra,
    publish_load_event,
    report_data_source_written,
    report_source_tables,
)
from mogulflow.airflow.notifications import ACCOUNT_XCOM_KEY
from mogulflow.airflow.preflight import airflow_checks
from mogulflow.airflow.resources import chartmogul_client, open_warehouse
from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.data_sources import ensure_data_source as ensure_named_data_source
from mogulflow.chartmogul.data_sources import find_data_source as find_named_data_source
from mogulflow.failures import Outage, describe, is_permanent
from mogulflow.load.entity_step import StepInputs, log_outcome
from mogulflow.merge.conversions import extract_and_validate_conversions, keys_to_look_up
from mogulflow.merge.merges import merge_conversions
from mogulflow.merge.paying_customers import BillingKey, LookupReport, wait_for_paying_customers
from mogulflow.reconcile.run import ReconcileReport, ReconcileRequest, run_reconciliation
from mogulflow.record.account import RunAccount, summarize_run, write_run
from mogulflow.record.rejects import write_rejects
from mogulflow.sync import leads_trials
from mogulflow.values.constants import DEFAULT_DATA_SOURCE_NAME, SAMPLE_SIZE
from mogulflow.values.deletions import DeleteReport
from mogulflow.values.entities import Entity
from mogulflow.values.errors import SetupError
from mogulflow.values.json_form import Json, from_json, to_json
from mogulflow.values.pipelines import Pipeline
from mogulflow.values.run_settings import MergeSettings, RunSettings
from mogulflow.values.step_reports import ExtractReport, LoadReport
from mogulflow.warehouse import staging
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.deletions import drop_plan

log = logging.getLogger(__name__)

#: The XCom key under which a failed task leaves its one-line reason (record_run reads it).
ERROR_KEY = "error"

P = ParamSpec("P")
R = TypeVar("R")


class TaskResources:
    """The warehouse and the ChartMogul client of one task: each opened from its Airflow connection
    on first use, both closed when the task ends."""

    def __init__(self) -> None:
        self._warehouse: Warehouse | None = None
        self._client: ChartMogulClient | None = None

    @property
    def warehouse(self) -> Warehouse:
        """The warehouse of `warehouse_default`."""
        if self._warehouse is None:
            self._warehouse = open_warehouse()
        return self._warehouse

    @property
    def client(self) -> ChartMogulClient:
        """The ChartMogul client of `chartmogul_default`."""
        if self._client is None:
            self._client = chartmogul_client()
        return self._client

    def close(self) -> None:
        """Close what was opened."""
        if self._client is not None:
            self._client.close()
        if self._warehouse is not None:
            self._warehouse.close()


def task_body(body: Callable[..., R]) -> Callable[..., Json]:
    """The one edge every task goes through.

    In: each XCom input (a positional-or-keyword parameter after the resources) decoded by the
    body's type hint; keyword-only parameters are passed as they are. Out: the body's typed result
    as JSON. Failure policy: the error's one-line reason goes to XCom (`ERROR_KEY`), where
    record_run finds it for the run's account; a mistake (`failures.is_permanent`: a refused key,
    a missing table, a param that makes no sense) fails the task at once, without retries; an
    outage is re-raised for Airflow to retry. A skip stays a skip.
    """
    hints = typing.get_type_hints(body)
    received = [
        name
        for name, parameter in list(inspect.signature(body).parameters.items())[1:]
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]

    @functools.wraps(body)
    def run(**inputs: object) -> Json:
        resources = TaskResources()
        try:
            decoded = {
                name: from_json(hints[name], value) if name in received else value
                for name, value in inputs.items()
            }
            return to_json(body(resources, **decoded))
        except AirflowSkipException:
            raise
        except Exception as error:
            reason = str(error) if isinstance(error, AirflowFailException) else describe(error)
            get_current_context()["ti"].xcom_push(key=ERROR_KEY, value=reason)
            if is_permanent(error):
                raise AirflowFailException(reason) from error
            raise
        finally:
            resources.close()

    return run


def run_settings_of(pipeline: Pipeline[RunSettings] | Pipeline[MergeSettings], settings: Json) -> RunSettings:
    """The settings every DAG shares, from what the pipeline's resolve_window handed on."""
    return pipeline.run_of(from_json(pipeline.settings_type, settings))  # type: ignore[arg-type]


# ---- the tasks every sync-shaped DAG shares ---------------------------------------------------------


@task_body
def resolve_window(
    resources: TaskResources, *, pipeline: Pipeline[RunSettings] | Pipeline[MergeSettings]
) -> RunSettings | MergeSettings:
    """Decide the run's window (data interval, start/end or full refresh) and settings."""
    context = get_current_context()
    dag_run = context["dag_run"]
    resolved = pipeline.resolve(
        context["params"],
        run_id=dag_run.run_id,
        dag_id=dag_run.dag_id,
        data_interval_start=context.get("data_interval_start"),
        data_interval_end=context.get("data_interval_end"),
    )
    run = pipeline.run_of(resolved)  # type: ignore[arg-type]
    window = run.window
    log.info(
        "Run %s: window %s, data source %r%s.",
        run.run_id,
        "every row (full refresh)"
        if window.full_refresh
        else f"[{window.start:%Y-%m-%d %H:%M}, {window.end:%Y-%m-%d %H:%M}) UTC",
        run.data_source_name,
        ", dry run" if run.dry_run else "",
    )
    return resolved


@task_body
def preflight(
    resources: TaskResources, *, pipeline: Pipeline[RunSettings] | Pipeline[MergeSettings]
) -> dict[str, int]:
    """Check both connections, the API key, the source tables and columns, mogulflow's own tables;
    fail with every problem in one line (at once for mistakes, retried for an outage)."""
    report = airflow_checks(pipeline.reads)
    for line in report.checked:
        log.info("ok: %s", line)
    if report.problems:
        raise (SetupError if report.permanent else Outage)(report.summary())
    log.info("Preflight: all %d checks passed.", len(report.checked))
    return {"checked": len(report.checked)}


@task_body
def record_rejects(
    resources: TaskResources,
    settings: Json,
    data_source_uuid: str | None,
    extract: ExtractReport,
    *,
    pipeline: Pipeline[RunSettings] | Pipeline[MergeSettings],
) -> dict[Entity, int]:
    """Write the staged rejects to mogulflow_rejects; mark those waiting for their lead or plan."""
    run = run_settings_of(pipeline, settings)
    written = write_rejects(resources.warehouse, run, extract, data_source_uuid)
    log.info("Recorded %d rejected rows in mogulflow_rejects (run_id=%s).", sum(written.values()), run.run_id)
    return written


def record_run(
    settings: Json,
    *,
    pipeline: Pipeline[RunSettings] | Pipeline[MergeSettings],
    data_source_task: str,
    extract_task: str,
    load_tasks: Mapping[Entity, str],
    also_required: Sequence[str],
    delete_task: str | None = None,
) -> dict[str, str]:
    """Add up the run, write mogulflow_runs, fail the run if anything failed.

    Runs whatever happened upstream (trigger rule all_done), so it is not a `task_body`: a task that
    did not succeed left no XCom (tasks cannot query the metadata DB in Airflow 3), its rows count
    as failed and the run's message names it with the reason it left under `ERROR_KEY`.
    """
    context = get_current_context()
    ti = context["ti"]
    run = _settings_or_unresolved(pipeline, settings)
    deleting = () if delete_task is None else (delete_task,)
    required = ("resolve_window", *also_required, extract_task, *load_tasks.values(), *deleting)
    pulled = {name: ti.xcom_pull(task_ids=name) for name in (data_source_task, *required)}
    pulled["resolve_window"] = settings
    failures = [_did_not_finish(ti, name) for name in required if pulled[name] is None]
    extract = None if pulled[extract_task] is None else from_json(ExtractReport, pulled[extract_task])
    loads = {
        entity: None if pulled[name] is None else from_json(LoadReport, pulled[name])
        for entity, name in load_tasks.items()
    }
    deletes = None
    if delete_task is not None and pulled[delete_task] is not None:
        deletes = from_json(DeleteReport, pulled[delete_task])
    account = summarize_run(run, pipeline.account, extract, loads, task_failures=failures, deletes=deletes)
    # The account in XCom first, where the DAG's alerts read its counts, even if the write fails.
    ti.xcom_push(key=ACCOUNT_XCOM_KEY, value=to_json(account))
    warehouse = open_warehouse()
    try:
        write_run(warehouse, account, data_source=(run.data_source_name, pulled[data_source_task]))
        if not account.failed:  # a failed run keeps its parts (and planned deletes): cleared tasks read them
            staging.remove_run(warehouse, run.dag_id, run.run_id)
            drop_plan(warehouse, run_id=run.run_id)
    finally:
        warehouse.close()
    if account.failed:
        raise AirflowFailException(f"run {run.run_id} failed: {account.summary.message}")
    return _outcome(account)


def _outcome(account: RunAccount) -> dict[str, str]:
    return {"outcome": str(account.summary.outcome), "message": account.summary.message}


def _did_not_finish(ti: typing.Any, task_id: str) -> str:
    reason = ti.xcom_pull(task_ids=task_id, key=ERROR_KEY)
    return f"task {task_id} did not finish" + (f": {reason}" if reason else "")


def _settings_or_unresolved(
    pipeline: Pipeline[RunSettings] | Pipeline[MergeSettings], settings: Json
) -> RunSettings:
    """The run's settings; when resolve_window failed (a param that makes no sense), an empty window
    at the run's start, so that the failure is still recorded."""
    if settings is not None:
        return run_settings_of(pipeline, settings)
    context = get_current_context()
    dag_run = context["dag_run"]
    name = context["params"].get("data_source_name") or DEFAULT_DATA_SOURCE_NAME
    return RunSettings.unresolved(dag_run.run_id, dag_run.dag_id, str(name), at=datetime.now(UTC))


def _extracted(report: ExtractReport) -> None:
    """Report the source tables read (hook lineage) and log the extract's summary line."""
    parts = list(report.parts.values())
    report_source_tables(part.entity.table for part in parts)
    log.info(
        "Extracted %d rows (%s): %d valid, %d rejected; staged for the next tasks.",
        sum(p.extracted for p in parts),
        ", ".join(f"{p.entity.table} {p.extracted}" for p in parts),
        sum(p.valid for p in parts),
        sum(p.rejected for p in parts),
    )


def _loaded(
    run: RunSettings, data_source_uuid: str | None, extract: ExtractReport, loaded: LoadReport
) -> None:
    """Publish the load's asset event (its extra: the counts and rejects by rule) and its lineage."""
    extra = load_event_extra(run, data_source_uuid, extract.get(loaded.entity), loaded)
    publish_load_event(get_current_context(), str(loaded.entity), extra)
    if not run.dry_run:
        report_data_source_written(data_source_uuid)


# ---- chartmogul_leads_trials ------------------------------------------------------------------------


@task_body
def ensure_data_source(resources: TaskResources, settings: RunSettings) -> str | None:
    """Find the run's data source by name; create it if missing (not in a dry run)."""
    found = ensure_named_data_source(resources.client, settings.data_source_name, dry_run=settings.dry_run)
    log.info("Data source %r: %s.", settings.data_source_name, found or "not created (dry run)")
    return found


@task_body
def extract_and_validate(
    resources: TaskResources, settings: RunSettings, data_source_uuid: str | None
) -> ExtractReport:
    """Extract leads, plans and trials for the window and validate every row."""
    report = leads_trials.extract_and_validate(resources.warehouse, settings, data_source_uuid)
    _extracted(report)
    return report


@task_body
def load_entity(
    resources: TaskResources,
    settings: RunSettings,
    data_source_uuid: str | None,
    extract: ExtractReport | None,
    *,
    entity: Entity,
) -> LoadReport:
    """Plan and load one entity; a reject ratio above the limit fails the task at once (no retry can
    change it)."""
    if extract is None:
        # upsert_customers runs even when upsert_plans failed, but not without an extract.
        raise AirflowSkipException("nothing to load: extract_and_validate did not finish")
    inputs = StepInputs(resources.warehouse, resources.client, settings, data_source_uuid, extract)
    loaded = leads_trials.load_entity(inputs, entity)
    _loaded(settings, data_source_uuid, extract, loaded)
    return loaded


# ---- chartmogul_merge_converted_leads ---------------------------------------------------------------


@task_body
def find_data_source(resources: TaskResources, settings: MergeSettings) -> str | None:
    """Find the leads' data source by name (never created here)."""
    name = settings.run.data_source_name
    found = find_named_data_source(resources.client, name)
    if found is None:
        log.warning(
            "ChartMogul has no data source %r: no lead was synced there, so every conversion is rejected. "
            "Run chartmogul_leads_trials first, or set data_source_name.",
            name,
        )
    else:
        log.info("Data source %r: %s.", name, found)
    return found


@task_body
def extract_conversions(
    resources: TaskResources, settings: MergeSettings, data_source_uuid: str | None
) -> ExtractReport:
    """Extract the window's conversions and validate every row."""
    report = extract_and_validate_conversions(resources.warehouse, settings.run, data_source_uuid)
    _extracted(report)
    return report


@task_body
def merge_customers(
    resources: TaskResources,
    settings: MergeSettings,
    data_source_uuid: str | None,
    extract: ExtractReport,
    lookup: LookupReport | None,
) -> LoadReport:
    """Merge each lead into its paying customer, once; record every outcome in the sync state."""
    run = settings.run
    result = merge_conversions(
        resources.warehouse, resources.client, run, data_source_uuid, extract, lookup or LookupReport()
    )
    _loaded(run, data_source_uuid, extract, result)
    log_outcome(result)
    return result


# ---- chartmogul_reconcile (and the last task of chartmogul_leads_trials) --------------------------


@task_body
def reconcile(resources: TaskResources) -> ReconcileReport:
    """`chartmogul_reconcile`: reconcile the data source named by the params; re-send if asked."""
    params = get_current_context()["params"]
    return _reconcile(resources, params.get("data_source_name"), resend=bool(params.get("resend", False)))


@task_body
def reconcile_after_sync(resources: TaskResources, data_source_uuid: str | None) -> ReconcileReport:
    """`chartmogul_leads_trials`' last task: reconcile the run's data source when `reconcile` is true.

    Skipped when the param is false, or when the run had no data source (a dry run before the
    first sync). It only reports: re-sending is `chartmogul_reconcile`'s `resend`.
    """
    params = get_current_context()["params"]
    if not params.get("reconcile", False):
        raise AirflowSkipException("param reconcile is false: no reconciliation after this sync")
    if data_source_uuid is None:
        raise AirflowSkipException("the data source does not exist in ChartMogul yet: nothing to reconcile")
    return _reconcile(resources, params.get("data_source_name"), resend=False)


def _reconcile(resources: TaskResources, data_source_name: object, *, resend: bool) -> ReconcileReport:
    dag_run = get_current_context()["dag_run"]
    request = ReconcileRequest(
        run_id=dag_run.run_id,
        dag_id=dag_run.dag_id,
        data_source_name=str(data_source_name or DEFAULT_DATA_SOURCE_NAME).strip(),
        resend=resend,
        started_at=datetime.now(UTC),
    )
    return run_reconciliation(resources.warehouse, resources.client, request)


# ---- the wait for paying customers (chartmogul_merge_converted_leads) ------------------------------


@dataclass(frozen=True)
class FirstLookup:
    """What the wait task knows after its first look: the keys, what was found, and its pace."""

    keys: tuple[BillingKey, ...]
    report: LookupReport
    interval_seconds: float
    timeout_seconds: float


def look_for_paying_customers(
    settings: Json,
    data_source_uuid: str | None,
    extract: Json,
    *,
    chartmogul_conn_id: str,
    warehouse_conn_id: str,
) -> FirstLookup:
    """Look every paying customer the run needs up once (in the worker, before any deferral)."""
    merge = from_json(MergeSettings, settings)
    warehouse = open_warehouse(warehouse_conn_id)
    try:
        keys = keys_to_look_up(warehouse, data_source_uuid, from_json(ExtractReport, extract))
    finally:
        warehouse.close()
    pace = (merge.lookup_interval_seconds, merge.lookup_timeout_seconds)
    if not keys:
        log.info("No conversion waits for a merge: nothing to look up.")
        return FirstLookup((), LookupReport(), *pace)

    async def look_once() -> LookupReport:
        client = ChartMogulHook(chartmogul_conn_id=chartmogul_conn_id).get_async_client()
        try:
            return await wait_for_paying_customers(client, keys, interval=1.0, deadline=0.0)
        finally:
            await client.aclose()

    return FirstLookup(tuple(keys), asyncio.run(look_once()), *pace)


def finish_lookup(report: LookupReport | Json, task_log: logging.Logger | logging.LoggerAdapter) -> Json:
    """Log how the wait ended and hand its report on (XCom)."""
    if not isinstance(report, LookupReport):
        report = from_json(LookupReport, report)
    write = task_log.warning if report.missing else task_log.info
    write(
        "Paying customers: %d found, %d not found after %d lookup(s) over %.0f s%s",
        len(report.found),
        len(report.missing),
        report.polls,
        report.waited_seconds,
        f": {[str(key) for key in sorted(report.missing)][:SAMPLE_SIZE]}" if report.missing else "",
    )
    return to_json(report)
