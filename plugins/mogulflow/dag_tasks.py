"""The DAG edge: what each task of both DAGs does, between Airflow and the Airflow-free steps.

Each function here takes the XCom values a task receives, turns them into mogulflow's typed
values (`mogulflow.xcom`), opens the warehouse and the ChartMogul client from their connections,
calls one step, and turns the result back into XCom. `resolve_window_task` and
`record_run_task` build the two tasks both DAGs share. The DAG files only wire these together.

Imported at DAG parse time: heavy imports stay inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task

if TYPE_CHECKING:
    from mogulflow.api.client import ChartMogulClient
    from mogulflow.settings import MergeSettings, RunSettings
    from mogulflow.warehouse import Warehouse

XCom = Any  # what XCom carries: JSON (see mogulflow.xcom.Json)

LEADS_TRIALS = "leads_trials"
CONVERSIONS = "conversions"


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


def _fail_without_retry(error: Exception) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(error))


# ---- the shared tasks -------------------------------------------------------------------------------


def resolve_window_task(kind: str) -> Callable[[], XCom]:
    """The `resolve_window` task: decide the run's window and settings from params and data interval."""

    @task(task_id="resolve_window", multiple_outputs=False)
    def resolve_window() -> XCom:
        """Decide the run's window (data interval, start/end or full refresh) and settings."""
        from mogulflow import settings
        from mogulflow.xcom import to_xcom

        context = get_current_context()
        dag_run = context["dag_run"]
        resolve = settings.resolve_merge_settings if kind == CONVERSIONS else settings.resolve_settings
        return to_xcom(
            resolve(
                context["params"],
                run_id=dag_run.run_id,
                dag_id=dag_run.dag_id,
                data_interval_start=context.get("data_interval_start"),
                data_interval_end=context.get("data_interval_end"),
            )
        )

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
    def record_run(settings: XCom) -> XCom:
        """Write the run's account to mogulflow_runs; fail the run if anything failed."""
        from mogulflow import account, staging
        from mogulflow.model import Entity
        from mogulflow.reports import ExtractReport, LoadReport
        from mogulflow.xcom import from_xcom

        ti = get_current_context()["ti"]
        run = _merge_settings(settings).run if kind == CONVERSIONS else _run_settings(settings)
        pulled = {
            name: ti.xcom_pull(task_ids=name)
            for name in (data_source_task, extract_task, *load_tasks.values())
        }
        failures = [
            f"task {name} did not finish"
            for name in (extract_task, *load_tasks.values())
            if pulled[name] is None
        ]
        extract = None if pulled[extract_task] is None else from_xcom(ExtractReport, pulled[extract_task])
        loads = {
            Entity(entity): None if pulled[name] is None else from_xcom(LoadReport, pulled[name])
            for entity, name in load_tasks.items()
        }
        rules = account.CONVERSIONS if kind == CONVERSIONS else account.LEADS_TRIALS
        result = account.summarize_run(run, rules, extract, loads, task_failures=failures)
        with _warehouse() as warehouse:
            account.write_run(warehouse, result, data_source=(run.data_source_name, pulled[data_source_task]))
        if result.failed:
            raise _fail_without_retry(RuntimeError(f"run {run.run_id} failed: {result.summary.message}"))
        staging.remove_run_folder(run.dag_id, run.run_id)
        return {"outcome": str(result.summary.outcome), "message": result.summary.message}

    return record_run


# ---- chartmogul_leads_trials ------------------------------------------------------------------------


def ensure_data_source(settings: XCom) -> str | None:
    """Find the run's data source by name; create it if missing (not in a dry run)."""
    from mogulflow import data_sources

    run = _run_settings(settings)
    with _client() as client:
        return data_sources.ensure_data_source(client, run.data_source_name, dry_run=run.dry_run)


def extract_and_validate(settings: XCom, data_source_uuid: str | None) -> XCom:
    """Extract leads, plans and trials for the window and validate every row."""
    from mogulflow import sync
    from mogulflow.xcom import to_xcom

    with _warehouse() as warehouse:
        return to_xcom(sync.extract_and_validate(warehouse, _run_settings(settings), data_source_uuid))


def record_rejects(
    settings: XCom, data_source_uuid: str | None, report: XCom, *, merge: bool = False
) -> XCom:
    """Write the staged rejects to mogulflow_rejects; mark those waiting for their lead or plan."""
    from mogulflow.rejects import write_rejects
    from mogulflow.reports import ExtractReport
    from mogulflow.xcom import from_xcom, to_xcom

    run = _merge_settings(settings).run if merge else _run_settings(settings)
    with _warehouse() as warehouse:
        return to_xcom(write_rejects(warehouse, run, from_xcom(ExtractReport, report), data_source_uuid))


def load_entity(entity: str, settings: XCom, data_source_uuid: str | None, report: XCom) -> XCom:
    """Plan and load one entity ("plan", "lead" or "trial"); a reject ratio above the limit fails
    the task at once (no retry can change it)."""
    from mogulflow import sync
    from mogulflow.entity_step import RejectRatioExceeded, StepInputs
    from mogulflow.model import Entity
    from mogulflow.reports import ExtractReport
    from mogulflow.xcom import from_xcom, to_xcom

    extract = from_xcom(ExtractReport, report)
    with _warehouse() as warehouse, _client() as client:
        inputs = StepInputs(warehouse, client, _run_settings(settings), data_source_uuid, extract)
        try:
            return to_xcom(sync.load_entity(inputs, Entity(entity)))
        except RejectRatioExceeded as error:
            raise _fail_without_retry(error) from error


# ---- chartmogul_merge_converted_leads ---------------------------------------------------------------


def find_data_source(settings: XCom) -> str | None:
    """Find the leads' data source by name (never created here)."""
    import logging

    from mogulflow import data_sources

    name = _merge_settings(settings).run.data_source_name
    with _client() as client:
        found = data_sources.find_data_source(client, name)
    if found is None:
        logging.getLogger(__name__).warning(
            "ChartMogul has no data source %r: no lead was synced there, so every conversion is rejected. "
            "Run chartmogul_leads_trials first, or set data_source_name.",
            name,
        )
    return found


def extract_and_validate_conversions(settings: XCom, data_source_uuid: str | None) -> XCom:
    """Extract the window's conversions and validate every row."""
    from mogulflow.conversions import extract_and_validate_conversions as run_step
    from mogulflow.xcom import to_xcom

    with _warehouse() as warehouse:
        return to_xcom(run_step(warehouse, _merge_settings(settings).run, data_source_uuid))


def merge_customers(settings: XCom, data_source_uuid: str | None, report: XCom, lookup: XCom) -> XCom:
    """Merge each lead into its paying customer, once; record every outcome in the sync state."""
    from mogulflow.merge import merge_conversions
    from mogulflow.paying_customers import LookupReport
    from mogulflow.reports import ExtractReport
    from mogulflow.xcom import from_xcom, to_xcom

    with _warehouse() as warehouse, _client() as client:
        result = merge_conversions(
            warehouse,
            client,
            _merge_settings(settings).run,
            data_source_uuid,
            from_xcom(ExtractReport, report),
            from_xcom(LookupReport, lookup or {}),
        )
    return to_xcom(result)
