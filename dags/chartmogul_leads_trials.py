"""chartmogul_leads_trials: the nightly lead and trial sync. Wiring only: the tasks' bodies are in
mogulflow.dag_tasks, the steps in mogulflow.sync."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from mogulflow import dag_tasks, reconcile_task
from mogulflow.dag_defaults import POOL_NAME, default_args, leads_trials_params
from mogulflow.lineage import CHARTMOGUL_CUSTOMERS, CHARTMOGUL_TRIAL_INVOICES
from mogulflow.notifications import run_alerts

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

With `reconcile` true, `reconcile_with_chartmogul` then compares the data source with the warehouse
and records the differences in **`mogulflow_reconciliation`** (see `chartmogul_reconcile`).

Connections: `warehouse_default` (duckdb or postgres) and `chartmogul_default` (type chartmogul).
Writes run in the `chartmogul_api` pool.
"""


@dag(
    dag_id="chartmogul_leads_trials",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the sync state; overlapping windows are harmless, racing ones are not
    params=leads_trials_params(),
    doc_md=DOC_MD,
    tags=["chartmogul", "mogulflow"],
    default_args=default_args(),
    **run_alerts(),  # failure, too many rejects, not done by the deadline: mogulflow.notifications
)
def chartmogul_leads_trials():
    @task(multiple_outputs=False)
    def preflight() -> dict:
        """Check connections, API key, source tables and columns; list every problem at once."""
        return dag_tasks.preflight(dag_tasks.LEADS_TRIALS)

    @task(pool=POOL_NAME, multiple_outputs=False)
    def ensure_data_source(settings: dict) -> str | None:
        """Find the ChartMogul data source by name; create it if missing."""
        return dag_tasks.ensure_data_source(settings)

    @task(multiple_outputs=False)
    def extract_and_validate(settings: dict, data_source_uuid: str | None) -> dict:
        """Extract leads, plans and trials for the window and validate every row."""
        return dag_tasks.extract_and_validate(settings, data_source_uuid)

    @task(multiple_outputs=False)
    def record_rejects(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Write every rejected row, with its reason, to mogulflow_rejects."""
        return dag_tasks.record_rejects(settings, data_source_uuid, report)

    @task(pool=POOL_NAME, multiple_outputs=False)
    def upsert_plans(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Create or update every valid plan in ChartMogul."""
        return dag_tasks.load_entity("plan", settings, data_source_uuid, report)

    @task(pool=POOL_NAME, trigger_rule="all_done", multiple_outputs=False, outlets=[CHARTMOGUL_CUSTOMERS])
    def upsert_customers(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Create new leads as customers and PATCH changed ones (runs even when plans failed)."""
        return dag_tasks.load_entity("lead", settings, data_source_uuid, report)

    @task(pool=POOL_NAME, multiple_outputs=False, outlets=[CHARTMOGUL_TRIAL_INVOICES])
    def import_trial_invoices(settings: dict, data_source_uuid: str | None, report: dict) -> dict:
        """Import one invoice with a trial line item per new or changed trial."""
        return dag_tasks.load_entity("trial", settings, data_source_uuid, report)

    record_run = dag_tasks.record_run_task(
        dag_tasks.LEADS_TRIALS,
        data_source_task="ensure_data_source",
        extract_task="extract_and_validate",
        load_tasks={"plan": "upsert_plans", "lead": "upsert_customers", "trial": "import_trial_invoices"},
        also_required=("preflight",),
    )

    @task(pool=POOL_NAME, multiple_outputs=False)
    def reconcile_with_chartmogul(data_source_uuid: str | None) -> dict:
        """With param reconcile: compare ChartMogul with the warehouse, record the differences."""
        return reconcile_task.reconcile_after_sync(data_source_uuid)

    settings = dag_tasks.resolve_window_task(dag_tasks.LEADS_TRIALS)()
    checked = preflight()
    data_source_uuid = ensure_data_source(settings)
    report = extract_and_validate(settings, data_source_uuid)
    rejects = record_rejects(settings, data_source_uuid, report)
    plans = upsert_plans(settings, data_source_uuid, report)
    customers = upsert_customers(settings, data_source_uuid, report)
    invoices = import_trial_invoices(settings, data_source_uuid, report)
    account = record_run(settings)
    settings >> checked >> data_source_uuid
    rejects >> plans >> customers >> invoices >> account
    [checked, data_source_uuid, report, rejects, plans, customers] >> account
    account >> reconcile_with_chartmogul(data_source_uuid)  # after a recorded, successful sync only


chartmogul_leads_trials()
