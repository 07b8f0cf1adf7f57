"""chartmogul_leads_trials: the nightly lead and trial sync. Wiring only; the steps live in mogulflow.sync."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from mogulflow.dag_defaults import default_args

POOL = "chartmogul_api"  # mogulflow.airflow_resources.POOL_NAME (not imported: keep parsing light)

DOC_MD = """
# ChartMogul leads and trials

Keeps ChartMogul's **Leads**, **Trials**, **Trial-to-Paid Conversion**, **Pipeline Funnel** and
**Sales Cycle Length** charts true to the warehouse.

Each run reads the `leads`, `plans` and `trials` rows whose `updated_at` falls in its data interval
(one UTC day; or every row with `full_refresh`, or an explicit `start`/`end`), validates every row
(bad rows go to **`mogulflow_rejects`** with the field, the rule and what was found, and are never
sent), then writes to ChartMogul through the `chartmogul_default` connection:

1. `upsert_plans`: every valid plan;
2. `upsert_customers`: one customer per lead in the data source `data_source_name`, with
   `lead_created_at` defaulting to the trial date (ChartMogul's own rule);
3. `import_trial_invoices`: one invoice per trial with a `trial` line item.

Only what changed since the last run is sent (`mogulflow_sync_state`); rows that fail are retried
by the next run. `record_run` writes the run's account to **`mogulflow_runs`**:
extracted = created + updated + unchanged + rejected + failed, per entity. The run fails when rows
failed, or when an entity's reject share is above `max_reject_ratio` (that entity is not loaded).

Connections: `warehouse_default` (duckdb or postgres) and `chartmogul_default` (type chartmogul).
Writes run in the `chartmogul_api` pool.
"""

PARAMS = {
    "full_refresh": Param(
        False,
        type="boolean",
        title="Full refresh",
        description="Ignore the data interval: extract every row.",
    ),
    "start": Param(
        None,
        type=["null", "string"],
        title="Window start",
        description="Explicit window start for manual runs (ISO-8601, UTC), overriding the data interval.",
    ),
    "end": Param(
        None,
        type=["null", "string"],
        title="Window end",
        description="Explicit window end (exclusive; ISO-8601, UTC). Defaults to the run's start when only "
        "start is set.",
    ),
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Validate and compare with the sync state, report what would be created, updated or left "
        "alone; write nothing to ChartMogul or the sync state.",
    ),
    "data_source_name": Param(
        "Leads",
        type="string",
        minLength=1,
        title="Data source",
        description="The ChartMogul custom data source to write into; created if missing.",
    ),
    "max_reject_ratio": Param(
        0.05,
        type="number",
        minimum=0,
        maximum=1,
        title="Max reject ratio",
        description="Above this share of rejected rows in an entity (rejected ÷ extracted, duplicates "
        "counted), the run fails before loading that entity.",
    ),
}


def _settings(settings: dict):
    from mogulflow.sync import RunSettings

    return RunSettings.from_xcom(settings)


def _fail_without_retry(error: Exception):
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(error))


@dag(
    dag_id="chartmogul_leads_trials",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the sync state; overlapping windows are harmless, racing ones are not
    params=PARAMS,
    doc_md=DOC_MD,
    tags=["chartmogul", "mogulflow"],
    default_args=default_args(),
)
def chartmogul_leads_trials():
    @task
    def resolve_window() -> dict:
        """Decide the run's window (data interval, start/end or full refresh) and settings."""
        from mogulflow.sync import resolve_settings

        context = get_current_context()
        dag_run = context["dag_run"]
        settings = resolve_settings(
            context["params"],
            run_id=dag_run.run_id,
            dag_id=dag_run.dag_id,
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
        )
        return settings.to_xcom()

    @task(pool=POOL)
    def ensure_data_source(settings: dict) -> str | None:
        """Find the ChartMogul data source by name; create it if missing."""
        from mogulflow.airflow_resources import chartmogul_client
        from mogulflow.sync import ensure_data_source as ensure

        run = _settings(settings)
        with chartmogul_client() as client:
            return ensure(client, run.data_source_name, dry_run=run.dry_run)

    @task
    def extract_and_validate(settings: dict, data_source_uuid: str | None) -> dict:
        """Extract leads, plans and trials for the window and validate every row."""
        from mogulflow.airflow_resources import open_warehouse
        from mogulflow.sync import extract_and_validate as run_step

        warehouse = open_warehouse()
        try:
            return run_step(warehouse, _settings(settings), data_source_uuid)
        finally:
            warehouse.close()

    @task
    def record_rejects(settings: dict, report: dict) -> dict:
        """Write every rejected row, with its reason, to mogulflow_rejects."""
        from mogulflow.airflow_resources import open_warehouse
        from mogulflow.sync import write_rejects

        warehouse = open_warehouse()
        try:
            return write_rejects(warehouse, _settings(settings), report)
        finally:
            warehouse.close()

    def _load(step_name: str, settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        from mogulflow import sync
        from mogulflow.airflow_resources import chartmogul_client, open_warehouse

        step = getattr(sync, step_name)
        warehouse = open_warehouse()
        try:
            with chartmogul_client() as client:
                return step(warehouse, client, _settings(settings), data_source_uuid, report)
        except sync.RejectRatioExceeded as error:
            raise _fail_without_retry(error) from error
        finally:
            warehouse.close()

    @task(pool=POOL)
    def upsert_plans(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Create or update every valid plan in ChartMogul."""
        return _load("upsert_plans", settings, data_source_uuid, report)

    @task(pool=POOL, trigger_rule="all_done")
    def upsert_customers(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Create new leads as customers and PATCH changed ones (runs even when plans failed)."""
        return _load("upsert_customers", settings, data_source_uuid, report)

    @task(pool=POOL)
    def import_trial_invoices(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Import one invoice with a trial line item per new or changed trial."""
        return _load("import_trial_invoices", settings, data_source_uuid, report)

    @task(trigger_rule="all_done", retries=0)
    def record_run(settings: dict) -> dict:
        """Write the run's account to mogulflow_runs; fail the run if anything failed."""
        from mogulflow import staging
        from mogulflow.airflow_resources import open_warehouse
        from mogulflow.sync import summarize_run, write_run

        context = get_current_context()
        ti = context["ti"]
        run = _settings(settings)
        pulled = {
            name: ti.xcom_pull(task_ids=name)
            for name in (
                "ensure_data_source",
                "extract_and_validate",
                "upsert_plans",
                "upsert_customers",
                "import_trial_invoices",
            )
        }
        # A task that did not succeed left no XCom (tasks cannot query the metadata DB in Airflow 3).
        failures = {
            name: f"task {name} did not finish"
            for name in ("extract_and_validate", "upsert_plans", "upsert_customers", "import_trial_invoices")
            if pulled[name] is None
        }
        summary, details = summarize_run(
            run,
            pulled["extract_and_validate"],
            {
                "plan": pulled["upsert_plans"],
                "lead": pulled["upsert_customers"],
                "trial": pulled["import_trial_invoices"],
            },
            task_failures=failures,
        )
        warehouse = open_warehouse()
        try:
            write_run(
                warehouse, summary, details, data_source=(run.data_source_name, pulled["ensure_data_source"])
            )
        finally:
            warehouse.close()
        if summary.outcome == "failed":
            raise _fail_without_retry(RuntimeError(f"run {run.run_id} failed: {summary.message}"))
        staging.remove_run_folder(run.dag_id, run.run_id)
        return {"outcome": summary.outcome, "message": summary.message}

    settings = resolve_window()
    data_source_uuid = ensure_data_source(settings)
    report = extract_and_validate(settings, data_source_uuid)
    rejects = record_rejects(settings, report)
    plans = upsert_plans(settings, data_source_uuid, report)
    customers = upsert_customers(settings, data_source_uuid, report)
    invoices = import_trial_invoices(settings, data_source_uuid, report)
    account = record_run(settings)
    rejects >> plans >> customers >> invoices >> account
    [data_source_uuid, report, rejects, plans, customers] >> account


chartmogul_leads_trials()
