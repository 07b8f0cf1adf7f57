"""chartmogul_merge_converted_leads: merge converted leads into their paying customers.

Wiring only: the tasks' bodies are in mogulflow.dag_tasks, the steps in mogulflow.conversions,
mogulflow.paying_customers and mogulflow.merge, the wait in mogulflow.merge_wait.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from mogulflow import dag_tasks
from mogulflow.dag_defaults import POOL_NAME, default_args, merge_params
from mogulflow.lineage import CHARTMOGUL_CUSTOMER_MERGES
from mogulflow.merge_wait import WaitForPayingCustomersOperator
from mogulflow.notifications import run_alerts

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


@dag(
    dag_id="chartmogul_merge_converted_leads",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the sync state: two runs must not merge the same lead
    params=merge_params(),
    doc_md=DOC_MD,
    tags=["chartmogul", "mogulflow"],
    default_args=default_args(),
    **run_alerts(),  # failure, too many rejects, not done by the deadline: mogulflow.notifications
)
def chartmogul_merge_converted_leads():
    @task(multiple_outputs=False)
    def preflight() -> dict:
        """Check connections, API key, the conversions table; list every problem at once."""
        return dag_tasks.preflight(dag_tasks.CONVERSIONS)

    @task(multiple_outputs=False)
    def find_data_source(settings: dict) -> str | None:
        """Find the leads' ChartMogul data source by name (never created here)."""
        return dag_tasks.find_data_source(settings)

    @task(multiple_outputs=False)
    def extract_and_validate(settings: dict, data_source_uuid: str | None) -> dict:
        """Extract the window's conversions and validate every row."""
        return dag_tasks.extract_and_validate_conversions(settings, data_source_uuid)

    @task(multiple_outputs=False)
    def record_rejects(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Write rejected conversions to mogulflow_rejects; re-read those waiting for their lead next run."""
        return dag_tasks.record_rejects(settings, data_source_uuid, report, merge=True)

    @task(pool=POOL_NAME, multiple_outputs=False, outlets=[CHARTMOGUL_CUSTOMER_MERGES])
    def merge_customers(settings: dict, data_source_uuid: str | None, report: dict, lookup: dict) -> dict:
        """Merge each lead into its paying customer, once; record every outcome in the sync state."""
        return dag_tasks.merge_customers(settings, data_source_uuid, report, lookup)

    record_run = dag_tasks.record_run_task(
        dag_tasks.CONVERSIONS,
        data_source_task="find_data_source",
        extract_task="extract_and_validate",
        load_tasks={"conversion": "merge_customers"},
        also_required=("preflight", "wait_for_paying_customers"),
    )

    settings = dag_tasks.resolve_window_task(dag_tasks.CONVERSIONS)()
    checked = preflight()
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
    settings >> checked >> data_source_uuid
    rejects >> lookup
    [checked, data_source_uuid, report, rejects, lookup, merges] >> account


chartmogul_merge_converted_leads()
