"""chartmogul_merge_converted_leads: merge converted leads into their paying customers.

Wiring only; the steps live in mogulflow.merge, the wait in mogulflow.merge_wait.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from mogulflow.dag_defaults import default_args
from mogulflow.merge_wait import WaitForPayingCustomersOperator

POOL = "chartmogul_api"  # mogulflow.airflow_resources.POOL_NAME (not imported: keep parsing light)

DOC_MD = """
# Merge converted leads into their paying customers

When a lead pays, the billing integration (Stripe, Chargebee, ...) creates a **new** customer in
ChartMogul, in its own data source. Until the lead mogulflow created is merged into it, ChartMogul
shows two customers and no conversion. This DAG does the merge, for every row of `conversions`
(`lead_id` → `billing_customer_external_id` in `billing_data_source_uuid`).

Each run reads the conversions whose `converted_at` falls in its data interval (one UTC day; or
every row with `full_refresh`, or an explicit `start`/`end`), plus those an earlier run could not
finish, and validates them: a conversion whose lead mogulflow has not synced into
`data_source_name` is rejected (**`mogulflow_rejects`**) and read again by the next run, since the
leads DAG may simply not have run yet. Then:

1. `wait_for_paying_customers` looks every paying customer up once. Those that do not exist yet
   (integrations process webhooks up to ~10 minutes late) are looked up again every
   `lookup_interval_seconds` (60) for up to `lookup_timeout_seconds` (1200) by **one deferred task
   for the whole batch**: it holds no worker slot while it waits (the triggerer polls; a running
   triggerer is required under the scheduler). Under `airflow dags test` and `dag.test()` the
   trigger runs in line, so the same run just takes as long as the wait.
2. `merge_customers` (pool `chartmogul_api`) merges each lead *from* our data source *into* its
   paying customer (`POST /v1/customers/merges`, applied by ChartMogul asynchronously), once: the
   merge is recorded in **`mogulflow_sync_state`** (entity `conversion`, status `merged`) as soon as
   ChartMogul accepts it, and the lead's own entry is re-pointed at the surviving customer so that
   later trial invoices from `chartmogul_leads_trials` land on it. A conversion is also recognised
   as merged when ChartMogul already lists the lead on the paying customer.
3. `record_run` writes the account to **`mogulflow_runs`**: conversions extracted = merged
   (`conversions_created`) + already merged (`conversions_unchanged`) + rejected + failed
   (`conversions_failed`: paying customer not found in time, or an API error).

**Outcome.** A paying customer that never appears does not stop the others: its conversion is
recorded as `failed` in the sync state and retried by the next run. But, as in
`chartmogul_leads_trials`, **a run with failed rows ends failed**, after merging everything it
could and recording its account, so that someone looks at a conversion that keeps failing (e.g. a
wrong `billing_customer_external_id`). Rejects alone end `success_with_rejects`.

Connections: `warehouse_default` (duckdb or postgres) and `chartmogul_default` (type chartmogul).
"""

PARAMS = {
    "full_refresh": Param(
        False,
        type="boolean",
        title="Full refresh",
        description="Ignore the data interval: read every conversion.",
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
    "data_source_name": Param(
        "Leads",
        type="string",
        minLength=1,
        title="Data source",
        description="The ChartMogul custom data source chartmogul_leads_trials writes the leads into.",
    ),
    "lookup_interval_seconds": Param(
        60,
        type="number",
        exclusiveMinimum=0,
        title="Lookup interval (s)",
        description="How often to look for paying customers that do not exist in ChartMogul yet.",
    ),
    "lookup_timeout_seconds": Param(
        1200,
        type="number",
        minimum=0,
        title="Lookup timeout (s)",
        description="How long to keep looking before a conversion counts as failed (retried next run).",
    ),
}


def _settings(settings: dict):
    from mogulflow.merge import MergeSettings

    return MergeSettings.from_xcom(settings)


@dag(
    dag_id="chartmogul_merge_converted_leads",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the sync state: two runs must not merge the same lead
    params=PARAMS,
    doc_md=DOC_MD,
    tags=["chartmogul", "mogulflow"],
    default_args=default_args(),
)
def chartmogul_merge_converted_leads():
    @task
    def resolve_window() -> dict:
        """Decide the run's window (data interval, start/end or full refresh) and the wait's pace."""
        from mogulflow.merge import resolve_merge_settings

        context = get_current_context()
        dag_run = context["dag_run"]
        settings = resolve_merge_settings(
            context["params"],
            run_id=dag_run.run_id,
            dag_id=dag_run.dag_id,
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
        )
        return settings.to_xcom()

    @task
    def find_data_source(settings: dict) -> str | None:
        """Find the leads' ChartMogul data source by name (never created here)."""
        from mogulflow.airflow_resources import chartmogul_client
        from mogulflow.merge import find_data_source as find

        with chartmogul_client() as client:
            return find(client, _settings(settings).run.data_source_name)

    @task
    def extract_and_validate(settings: dict, data_source_uuid: str | None) -> dict:
        """Extract the window's conversions and validate every row."""
        from mogulflow.airflow_resources import open_warehouse
        from mogulflow.merge import extract_and_validate_conversions

        warehouse = open_warehouse()
        try:
            return extract_and_validate_conversions(warehouse, _settings(settings), data_source_uuid)
        finally:
            warehouse.close()

    @task
    def record_rejects(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Write rejected conversions to mogulflow_rejects; re-read those waiting for their lead next run."""
        from mogulflow.airflow_resources import open_warehouse
        from mogulflow.merge import record_conversion_rejects

        warehouse = open_warehouse()
        try:
            return record_conversion_rejects(warehouse, _settings(settings), data_source_uuid, report)
        finally:
            warehouse.close()

    @task(pool=POOL)
    def merge_customers(settings: dict, data_source_uuid: str | None, report: dict, lookup: dict) -> dict:
        """Merge each lead into its paying customer, once; record every outcome in the sync state."""
        from mogulflow.airflow_resources import chartmogul_client, open_warehouse
        from mogulflow.merge import merge_conversions

        warehouse = open_warehouse()
        try:
            with chartmogul_client() as client:
                return merge_conversions(
                    warehouse, client, _settings(settings), data_source_uuid, report, lookup
                )
        finally:
            warehouse.close()

    @task(trigger_rule="all_done", retries=0)
    def record_run(settings: dict) -> dict:
        """Write the run's account to mogulflow_runs; fail the run if any conversion failed."""
        from airflow.sdk.exceptions import AirflowFailException

        from mogulflow import staging
        from mogulflow.airflow_resources import open_warehouse
        from mogulflow.merge import summarize_merge_run
        from mogulflow.sync import write_run

        ti = get_current_context()["ti"]
        run = _settings(settings)
        pulled = {
            name: ti.xcom_pull(task_ids=name)
            for name in (
                "find_data_source",
                "extract_and_validate",
                "wait_for_paying_customers",
                "merge_customers",
            )
        }
        # A task that did not succeed left no XCom (tasks cannot query the metadata DB in Airflow 3).
        failures = {
            name: f"task {name} did not finish"
            for name in ("extract_and_validate", "wait_for_paying_customers", "merge_customers")
            if pulled[name] is None
        }
        summary, details = summarize_merge_run(
            run, pulled["extract_and_validate"], pulled["merge_customers"], task_failures=failures
        )
        warehouse = open_warehouse()
        try:
            write_run(
                warehouse,
                summary,
                details,
                data_source=(run.run.data_source_name, pulled["find_data_source"]),
            )
        finally:
            warehouse.close()
        if summary.outcome == "failed":
            raise AirflowFailException(f"run {run.run.run_id} failed: {summary.message}")
        staging.remove_run_folder(run.run.dag_id, run.run.run_id)
        return {"outcome": summary.outcome, "message": summary.message}

    settings = resolve_window()
    data_source_uuid = find_data_source(settings)
    report = extract_and_validate(settings, data_source_uuid)
    rejects = record_rejects(settings, data_source_uuid, report)
    lookup = WaitForPayingCustomersOperator(
        task_id="wait_for_paying_customers",
        settings=settings,
        data_source_uuid=data_source_uuid,
        extract_report=report,
    )
    merges = merge_customers(settings, data_source_uuid, report, lookup.output)
    account = record_run(settings)
    rejects >> lookup
    [data_source_uuid, report, rejects, lookup, merges] >> account


chartmogul_merge_converted_leads()
