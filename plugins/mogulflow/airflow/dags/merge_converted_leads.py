"""chartmogul_merge_converted_leads: merge converted leads into their paying customers.

The definition that a thin DAG file (`mogulflow dags --into DIR`) builds by calling
`chartmogul_merge_converted_leads()`. Wiring only: the tasks are mogulflow.airflow.tasks, the steps
they call mogulflow.merge, the wait mogulflow.airflow.paying_customers_wait.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from mogulflow.airflow import tasks
from mogulflow.airflow.dag_params import default_args, merge_params
from mogulflow.airflow.notifications import run_alerts
from mogulflow.values.constants import MERGE_DAG_ID
from mogulflow.values.entities import Entity
from mogulflow.values.pipelines import MERGE_CONVERTED_LEADS

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


def chartmogul_merge_converted_leads() -> DAG:
    """Build the DAG. Its arguments (params, task defaults, alerts) are made anew at each build, so
    settings read from the environment apply and no two DAG objects share a `Param`."""

    @dag(
        dag_id=MERGE_DAG_ID,
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,  # runs share the sync state: two runs must not merge the same lead
        params=merge_params(),
        doc_md=DOC_MD,
        tags=["chartmogul", "mogulflow"],
        default_args=default_args(),
        **run_alerts(),  # failure, too many rejects, late: mogulflow.airflow.notifications
    )
    def chartmogul_merge_converted_leads():
        settings = tasks.resolve_window(MERGE_CONVERTED_LEADS)
        checked = tasks.preflight(MERGE_CONVERTED_LEADS)
        data_source_uuid = tasks.find_data_source(settings)
        report = tasks.extract_conversions(settings, data_source_uuid)
        rejects = tasks.record_rejects(MERGE_CONVERTED_LEADS, settings, data_source_uuid, report)
        lookup = tasks.wait_for_paying_customers(settings, data_source_uuid, report)
        merges = tasks.merge_customers(settings, data_source_uuid, report, lookup.output)
        account = tasks.record_run(
            MERGE_CONVERTED_LEADS,
            settings,
            data_source_task="find_data_source",
            extract_task="extract_and_validate",
            load_tasks={Entity.CONVERSION: "merge_customers"},
            also_required=("preflight", "wait_for_paying_customers"),
        )
        settings >> checked >> data_source_uuid
        rejects >> lookup
        [checked, data_source_uuid, report, rejects, lookup, merges] >> account

    return chartmogul_merge_converted_leads()
