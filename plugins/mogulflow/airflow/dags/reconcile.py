"""chartmogul_reconcile: does ChartMogul still hold what mogulflow synced?

The definition that a thin DAG file (`mogulflow dags --into DIR`) builds by calling
`chartmogul_reconcile()`. Wiring only: the task is mogulflow.airflow.tasks.reconcile, the step it
calls mogulflow.reconcile.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, dag
from airflow.timetables.trigger import CronTriggerTimetable

from mogulflow.airflow import tasks
from mogulflow.airflow.dag_params import default_args, reconcile_params
from mogulflow.values.constants import RECONCILE_DAG_ID

DOC_MD = """
# Reconcile ChartMogul with the warehouse

Compares what `chartmogul_leads_trials` synced into the data source `data_source_name` (the
`synced` rows of **`mogulflow_sync_state`**: leads, plans, trial invoices; each lead's
`lead_created_at` and `free_trial_started_at` as its source row has them now) with what ChartMogul
lists in that data source (customers, plans, invoices, page by page). It **never writes to
ChartMogul**.

- **Per month**: leads by `lead_created_at` month and trials by invoice month, warehouse vs
  ChartMogul, in the `details` of the run's row in **`mogulflow_runs`** (dag id
  `chartmogul_reconcile`; extracted = rows compared, unchanged = agreeing, failed = missing or
  different).
- **Per id**, one row in **`mogulflow_reconciliation`** per difference: `missing` (synced, not in
  ChartMogul), `extra` (in ChartMogul, not synced by mogulflow), or `different` (one row per field:
  `lead_created_at`, `free_trial_started_at`, a plan's `name`/`interval_count`/`interval_unit`, a
  trial's `date`/`service_period_end`/`amount_in_cents`/`currency`/`quantity`, with
  `warehouse_value` and `chartmogul_value`).

Rows whose last sync failed, and leads merged into a paying customer, are not compared (the next
sync settles the first; the second is the billing system's customer).

With **`resend`** true, the missing and different rows are marked in the sync state (status
`failed`, no content hash; missing ones also forget their ChartMogul uuid), so the next
`chartmogul_leads_trials` run re-sends them: drift is fixed by a sync, never by this DAG. Extra
objects are only reported.

A reconciliation that finds differences succeeds (the run's row says `failed` with what differs);
one that cannot finish (API or warehouse down, unknown data source) fails.

Schedule: daily at 06:00 UTC, six hours after the nightly sync starts, in the `chartmogul_api` pool
(so it does not list the data source while one of a sync's write tasks runs). To reconcile right
after each sync instead, set `reconcile` on `chartmogul_leads_trials`.

Connections: `warehouse_default` and `chartmogul_default`, as the nightly sync.
"""


def chartmogul_reconcile() -> DAG:
    """Build the DAG. Its arguments (params, task defaults, alerts) are made anew at each build, so
    settings read from the environment apply and no two DAG objects share a `Param`."""

    @dag(
        dag_id=RECONCILE_DAG_ID,
        # A fixed time after the midnight sync: the sync's own tasks emit no asset events to trigger on
        # yet, and `reconcile` on the nightly DAG covers "right after the sync".
        schedule=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=reconcile_params(),
        doc_md=DOC_MD,
        tags=["chartmogul", "mogulflow"],
        default_args=default_args(),
    )
    def chartmogul_reconcile():
        tasks.reconcile()

    return chartmogul_reconcile()
