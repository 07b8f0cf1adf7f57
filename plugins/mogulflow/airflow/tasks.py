"""The tasks of every DAG, one function per task, so that a DAG file reads as wiring only.

The tasks of every DAG, as the DAG files wire them: one function per task, taking the XCom values
it receives and returning its own (`XComArg`), so that a DAG file reads as wiring only.

Each task calls its body in `mogulflow.airflow.task_bodies`, where `task_body` is the one edge
(settings in, typed report out, one failure policy, one way to open the warehouse and the client).
The shared tasks take the DAG's `Pipeline` (`mogulflow.values.pipelines`) instead of a name.

Parse-time light: the DAG files import this module every time the DAG processor parses them. The
bodies import the steps (pandas, pandera, numpy, DuckDB, httpx); measured on this 2-core machine,
that adds 1.5 s (median of 5) to the 2.7 s `airflow.sdk` itself takes to import, for every parse
(`tests/test_dag_integrity.py` keeps the DAG files from importing pandas). So the bodies are
imported once, in `_bodies`, when a task runs: the one import inside a function here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType

from airflow.sdk import XComArg, task

from mogulflow.airflow.delete_approval import DeleteApprovalOperator
from mogulflow.airflow.lineage import (
    CHARTMOGUL_CUSTOMER_MERGES,
    CHARTMOGUL_CUSTOMERS,
    CHARTMOGUL_TRIAL_INVOICES,
)
from mogulflow.airflow.paying_customers_wait import WaitForPayingCustomersOperator
from mogulflow.values.constants import POOL_NAME
from mogulflow.values.entities import Entity
from mogulflow.values.json_form import Json
from mogulflow.values.pipelines import Pipeline
from mogulflow.values.run_settings import MergeSettings, RunSettings

AnyPipeline = Pipeline[RunSettings] | Pipeline[MergeSettings]
XComInput = XComArg | Json  # what a task receives: an upstream task's output, or a plain value


def _bodies() -> ModuleType:
    """The task bodies, imported when the first task body runs (see the module's docstring)."""
    from mogulflow.airflow import task_bodies

    return task_bodies


def _delete_bodies() -> ModuleType:
    """The deletes' task bodies, imported as `_bodies` is."""
    from mogulflow.airflow import delete_bodies

    return delete_bodies


# ---- the tasks every sync-shaped DAG shares ---------------------------------------------------------


def resolve_window(pipeline: AnyPipeline) -> XComArg:
    """The `resolve_window` task: the run's window and settings, handed to every later task."""

    @task(task_id="resolve_window", retries=0, multiple_outputs=False)
    def resolve_window() -> Json:
        """Decide the run's window (data interval, start/end or full refresh) and settings."""
        return _bodies().resolve_window(pipeline=pipeline)

    return resolve_window()


def preflight(pipeline: AnyPipeline) -> XComArg:
    """The `preflight` task: every setup problem at once, before anything is read or written."""

    @task(task_id="preflight", multiple_outputs=False)
    def preflight() -> Json:
        """Check connections, the API key, the source tables and columns; list every problem at once."""
        return _bodies().preflight(pipeline=pipeline)

    return preflight()


def record_rejects(
    pipeline: AnyPipeline, settings: XComInput, data_source_uuid: XComInput, report: XComInput
) -> XComArg:
    """The `record_rejects` task."""

    @task(task_id="record_rejects", multiple_outputs=False)
    def record_rejects(settings: Json, data_source_uuid: str | None, report: Json) -> Json:
        """Write every rejected row, with its reason, to mogulflow_rejects; mark the rows that wait for
        their lead or plan, so that the next runs read them again."""
        return _bodies().record_rejects(
            settings=settings, data_source_uuid=data_source_uuid, extract=report, pipeline=pipeline
        )

    return record_rejects(settings, data_source_uuid, report)


def record_run(
    pipeline: AnyPipeline,
    settings: XComInput,
    *,
    data_source_task: str,
    extract_task: str,
    load_tasks: Mapping[Entity, str],
    also_required: Sequence[str] = (),
    delete_task: str | None = None,
) -> XComArg:
    """The `record_run` task: runs whatever happened upstream, and fails the run if anything failed.

    `load_tasks` names the task that loads each entity; `also_required` other tasks that must have
    succeeded for the run to succeed; `delete_task` the task that deletes (its report is counted).
    """

    @task(task_id="record_run", trigger_rule="all_done", retries=0, multiple_outputs=False)
    def record_run(settings: Json = None) -> Json:
        """Write the run's account to mogulflow_runs (extracted = created + updated + unchanged +
        rejected + failed, per entity); fail the run if anything failed."""
        return _bodies().record_run(
            settings,
            pipeline=pipeline,
            data_source_task=data_source_task,
            extract_task=extract_task,
            load_tasks=load_tasks,
            also_required=also_required,
            delete_task=delete_task,
        )

    return record_run(settings)


# ---- chartmogul_leads_trials ------------------------------------------------------------------------


def ensure_data_source(settings: XComInput) -> XComArg:
    """The `ensure_data_source` task."""

    @task(task_id="ensure_data_source", pool=POOL_NAME, multiple_outputs=False)
    def ensure_data_source(settings: Json) -> str | None:
        """Find the ChartMogul data source by name; create it if missing."""
        return _bodies().ensure_data_source(settings=settings)

    return ensure_data_source(settings)


def extract_and_validate(settings: XComInput, data_source_uuid: XComInput) -> XComArg:
    """The `extract_and_validate` task of `chartmogul_leads_trials`."""

    @task(task_id="extract_and_validate", multiple_outputs=False)
    def extract_and_validate(settings: Json, data_source_uuid: str | None) -> Json:
        """Extract leads, plans and trials for the window and validate every row."""
        return _bodies().extract_and_validate(settings=settings, data_source_uuid=data_source_uuid)

    return extract_and_validate(settings, data_source_uuid)


def upsert_plans(settings: XComInput, data_source_uuid: XComInput, report: XComInput) -> XComArg:
    """The `upsert_plans` task."""

    @task(task_id="upsert_plans", pool=POOL_NAME, multiple_outputs=False)
    def upsert_plans(settings: Json, data_source_uuid: str | None, report: Json) -> Json:
        """Create or update every valid plan in ChartMogul."""
        return _bodies().load_entity(
            settings=settings, data_source_uuid=data_source_uuid, extract=report, entity=Entity.PLAN
        )

    return upsert_plans(settings, data_source_uuid, report)


def upsert_customers(settings: XComInput, data_source_uuid: XComInput, report: XComInput) -> XComArg:
    """The `upsert_customers` task: runs even when plans failed (customers need no plan)."""

    @task(
        task_id="upsert_customers",
        pool=POOL_NAME,
        trigger_rule="all_done",
        multiple_outputs=False,
        outlets=[CHARTMOGUL_CUSTOMERS],
    )
    def upsert_customers(settings: Json, data_source_uuid: str | None, report: Json) -> Json:
        """Create new leads as customers and PATCH changed ones (runs even when plans failed)."""
        return _bodies().load_entity(
            settings=settings, data_source_uuid=data_source_uuid, extract=report, entity=Entity.LEAD
        )

    return upsert_customers(settings, data_source_uuid, report)


def import_trial_invoices(settings: XComInput, data_source_uuid: XComInput, report: XComInput) -> XComArg:
    """The `import_trial_invoices` task."""

    @task(
        task_id="import_trial_invoices",
        pool=POOL_NAME,
        multiple_outputs=False,
        outlets=[CHARTMOGUL_TRIAL_INVOICES],
    )
    def import_trial_invoices(settings: Json, data_source_uuid: str | None, report: Json) -> Json:
        """Import one invoice with a trial line item per new or changed trial."""
        return _bodies().load_entity(
            settings=settings, data_source_uuid=data_source_uuid, extract=report, entity=Entity.TRIAL
        )

    return import_trial_invoices(settings, data_source_uuid, report)


def sync_lead_attributes(
    settings: XComInput, data_source_uuid: XComInput, report: XComInput, *, entity: Entity
) -> XComArg:
    """The `sync_lead_attributes` (or `sync_lead_tags`) task: runs once the customers are done, even
    when trial invoices failed; with no `lead_attributes` (`lead_tags`) table it reports the feature off."""
    task_id = "sync_lead_attributes" if entity is Entity.ATTRIBUTE else "sync_lead_tags"

    @task(task_id=task_id, pool=POOL_NAME, trigger_rule="all_done", multiple_outputs=False)
    def sync_lead_attributes(settings: Json, data_source_uuid: str | None, report: Json) -> Json:
        """Set, change and remove the custom attributes (tags) mogulflow owns; never others'."""
        return _bodies().load_entity(
            settings=settings, data_source_uuid=data_source_uuid, extract=report, entity=entity
        )

    return sync_lead_attributes(settings, data_source_uuid, report)


def plan_deletes(settings: XComInput, data_source_uuid: XComInput, report: XComInput) -> XComArg:
    """The `plan_deletes` task: what the run deletes (mirror, erasure), and whether a person must approve."""

    @task(task_id="plan_deletes", multiple_outputs=False)
    def plan_deletes(settings: Json, data_source_uuid: str | None, report: Json) -> Json:
        """Plan the deletes: customers and invoices mogulflow created that left the source (with
        mirror_deletes and full_refresh), and the leads of lead_erasures; store the approved set."""
        return _delete_bodies().plan_deletes(
            settings=settings, data_source_uuid=data_source_uuid, extract=report
        )

    return plan_deletes(settings, data_source_uuid, report)


def approve_deletes() -> DeleteApprovalOperator:
    """The `approve_deletes` task: asks a person in Required actions only when the guard says so."""
    return DeleteApprovalOperator(task_id="approve_deletes", retries=0)


def delete_objects(settings: XComInput, data_source_uuid: XComInput, approval: XComInput) -> XComArg:
    """The `delete_objects` task: runs whatever the loads did (an erasure must not wait for them)."""

    @task(
        task_id="delete_objects",
        pool=POOL_NAME,
        trigger_rule="all_done",
        multiple_outputs=False,
        # No outlets: a task's outlets emit on every success, so this one would add a second event per
        # asset to every run, deletions or not; the loads' events carry the run, and what was deleted
        # is in the run's account (deleted per entity) and mogulflow_deletions.
    )
    def delete_objects(settings: Json, data_source_uuid: str | None, approval: Json = None) -> Json:
        """Delete what was planned (mirror deletes only as approved); record each in mogulflow_deletions."""
        return _delete_bodies().delete_objects(
            settings=settings, data_source_uuid=data_source_uuid, approval=approval
        )

    return delete_objects(settings, data_source_uuid, approval)


def reconcile_after_sync(data_source_uuid: XComInput) -> XComArg:
    """The optional last task of `chartmogul_leads_trials` (param `reconcile`)."""

    @task(task_id="reconcile_with_chartmogul", pool=POOL_NAME, multiple_outputs=False)
    def reconcile_with_chartmogul(data_source_uuid: str | None) -> Json:
        """With param reconcile: compare ChartMogul with the warehouse, record the differences."""
        return _bodies().reconcile_after_sync(data_source_uuid=data_source_uuid)

    return reconcile_with_chartmogul(data_source_uuid)


# ---- chartmogul_merge_converted_leads ---------------------------------------------------------------


def find_data_source(settings: XComInput) -> XComArg:
    """The `find_data_source` task."""

    @task(task_id="find_data_source", multiple_outputs=False)
    def find_data_source(settings: Json) -> str | None:
        """Find the leads' ChartMogul data source by name (never created here)."""
        return _bodies().find_data_source(settings=settings)

    return find_data_source(settings)


def extract_conversions(settings: XComInput, data_source_uuid: XComInput) -> XComArg:
    """The `extract_and_validate` task of `chartmogul_merge_converted_leads`."""

    @task(task_id="extract_and_validate", multiple_outputs=False)
    def extract_and_validate(settings: Json, data_source_uuid: str | None) -> Json:
        """Extract the window's conversions and validate every row."""
        return _bodies().extract_conversions(settings=settings, data_source_uuid=data_source_uuid)

    return extract_and_validate(settings, data_source_uuid)


def wait_for_paying_customers(
    settings: XComInput, data_source_uuid: XComInput, report: XComInput
) -> WaitForPayingCustomersOperator:
    """The deferrable `wait_for_paying_customers` task: one trigger for the whole batch."""
    return WaitForPayingCustomersOperator(
        task_id="wait_for_paying_customers",
        settings=settings,
        data_source_uuid=data_source_uuid,
        extract_report=report,
    )


def merge_customers(
    settings: XComInput, data_source_uuid: XComInput, report: XComInput, lookup: XComInput
) -> XComArg:
    """The `merge_customers` task."""

    @task(
        task_id="merge_customers",
        pool=POOL_NAME,
        multiple_outputs=False,
        outlets=[CHARTMOGUL_CUSTOMER_MERGES],
    )
    def merge_customers(settings: Json, data_source_uuid: str | None, report: Json, lookup: Json) -> Json:
        """Merge each lead into its paying customer, once; record every outcome in the sync state."""
        return _bodies().merge_customers(
            settings=settings, data_source_uuid=data_source_uuid, extract=report, lookup=lookup
        )

    return merge_customers(settings, data_source_uuid, report, lookup)


# ---- chartmogul_reconcile ---------------------------------------------------------------------------


def reconcile() -> XComArg:
    """The one task of `chartmogul_reconcile`, in the pool: it reads through the same API budget the
    syncs write through, and a listing taken while a write task runs would report its half-done
    writes as drift."""

    @task(task_id="reconcile_with_chartmogul", pool=POOL_NAME, multiple_outputs=False)
    def reconcile_with_chartmogul() -> Json:
        """Compare the data source in ChartMogul with the warehouse; record every difference."""
        return _bodies().reconcile()

    return reconcile_with_chartmogul()
