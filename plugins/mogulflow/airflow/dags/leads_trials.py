"""chartmogul_leads_trials: the nightly lead and trial sync.

The definition that a thin DAG file (`mogulflow dags --into DIR`) builds by calling
`chartmogul_leads_trials()`. Wiring only: the tasks are mogulflow.airflow.tasks, the steps they call
mogulflow.sync.leads_trials.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from mogulflow.airflow import tasks
from mogulflow.airflow.dag_params import default_args, leads_trials_params
from mogulflow.airflow.notifications import run_alerts
from mogulflow.values.constants import LEADS_TRIALS_DAG_ID
from mogulflow.values.entities import Entity
from mogulflow.values.pipelines import LEADS_TRIALS

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
3. `import_trial_invoices`: one invoice per trial with a `trial` line item;
4. `sync_lead_attributes`, `sync_lead_tags` (optional tables `lead_attributes`, `lead_tags`): the
   customers' custom attributes and tags mogulflow owns (a new customer gets them in its create);
   never those others set.

Only what changed since the last run is sent (`mogulflow_sync_state`); rows that fail are retried
by the next run. `record_run` writes the run's account to **`mogulflow_runs`**:
extracted = created + updated + unchanged + rejected + failed, per entity, each count what ChartMogul
answered. The run fails when rows failed, or when an entity's reject share is above
`max_reject_ratio` with at least `min_rejects_to_fail` rejected rows (that entity is not loaded);
fewer rejects end `success_with_rejects`, with an alert.

Deletes (docs/deletes.md): with `mirror_deletes` and `full_refresh`, `plan_deletes` finds what
mogulflow created that left the source; above `max_delete_ratio` (or on an empty extract)
`approve_deletes` asks a person in **Browse → Required actions** (`approve_deletes` in the conf
approves in advance); `delete_objects` deletes the approved set and every lead of `lead_erasures`,
each in **`mogulflow_deletions`**.

With `reconcile` true, `reconcile_with_chartmogul` then compares the data source with the warehouse
and records the differences in **`mogulflow_reconciliation`** (see `chartmogul_reconcile`).

Connections: `warehouse_default` (duckdb or postgres) and `chartmogul_default` (type chartmogul).
Writes run in the `chartmogul_api` pool.
"""


def chartmogul_leads_trials() -> DAG:
    """Build the DAG. Its arguments (params, task defaults, alerts) are made anew at each build, so
    settings read from the environment apply and no two DAG objects share a `Param`."""

    @dag(
        dag_id=LEADS_TRIALS_DAG_ID,
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,  # runs share the sync state; overlapping windows are harmless, racing ones are not
        params=leads_trials_params(),
        doc_md=DOC_MD,
        tags=["chartmogul", "mogulflow"],
        default_args=default_args(),
        **run_alerts(),  # failure, too many rejects, late: mogulflow.airflow.notifications
    )
    def chartmogul_leads_trials():
        settings = tasks.resolve_window(LEADS_TRIALS)
        checked = tasks.preflight(LEADS_TRIALS)
        data_source_uuid = tasks.ensure_data_source(settings)
        report = tasks.extract_and_validate(settings, data_source_uuid)
        rejects = tasks.record_rejects(LEADS_TRIALS, settings, data_source_uuid, report)
        plans = tasks.upsert_plans(settings, data_source_uuid, report)
        customers = tasks.upsert_customers(settings, data_source_uuid, report)
        invoices = tasks.import_trial_invoices(settings, data_source_uuid, report)
        attributes = tasks.sync_lead_attributes(settings, data_source_uuid, report, entity=Entity.ATTRIBUTE)
        tags = tasks.sync_lead_attributes(settings, data_source_uuid, report, entity=Entity.TAG)
        planned = tasks.plan_deletes(settings, data_source_uuid, report)
        approval = tasks.approve_deletes()
        deleted = tasks.delete_objects(settings, data_source_uuid, approval.output)
        account = tasks.record_run(
            LEADS_TRIALS,
            settings,
            data_source_task="ensure_data_source",
            extract_task="extract_and_validate",
            load_tasks={
                Entity.PLAN: "upsert_plans",
                Entity.LEAD: "upsert_customers",
                Entity.TRIAL: "import_trial_invoices",
                Entity.ATTRIBUTE: "sync_lead_attributes",
                Entity.TAG: "sync_lead_tags",
            },
            also_required=("preflight", "plan_deletes"),
            delete_task="delete_objects",
        )
        settings >> checked >> data_source_uuid
        rejects >> plans >> customers >> invoices >> attributes >> tags >> account
        customers >> attributes  # they run once the customers are done, whatever the invoices did
        planned >> approval
        planned >> plans  # the loads read the sync state once interrupted deletes are settled
        [invoices, tags] >> deleted >> account
        [checked, data_source_uuid, report, rejects, plans, customers, invoices] >> account
        [attributes, planned] >> account
        account >> tasks.reconcile_after_sync(data_source_uuid)  # after a recorded, successful sync only

    return chartmogul_leads_trials()
