"""Constants, written once: DAG ids, connections, the pool, params' defaults, table names.

Constants, written once: the DAGs' ids, the connections and the pool, the params' defaults, the
names of mogulflow's own tables, and how much of a run's detail is kept.

Plain constants: the DAG files import them at parse time, so nothing may be imported here.
"""

from __future__ import annotations

# ---- the DAGs ------------------------------------------------------------------------------------
LEADS_TRIALS_DAG_ID = "chartmogul_leads_trials"
MERGE_DAG_ID = "chartmogul_merge_converted_leads"
#: The dag id of every reconciliation's account in `mogulflow_runs`, whichever DAG ran it.
RECONCILE_DAG_ID = "chartmogul_reconcile"

# ---- connections and the pool ------------------------------------------------------------------
WAREHOUSE_CONN_ID = "warehouse_default"
CHARTMOGUL_CONN_ID = "chartmogul_default"
# Tasks that write to ChartMogul run in this pool, so concurrent runs stay within the API's limits.
POOL_NAME = "chartmogul_api"

# ---- the params' defaults (the contract's) -------------------------------------------------------
DEFAULT_DATA_SOURCE_NAME = "Leads"
# Above this share of rejected rows in an entity, that entity is not loaded...
DEFAULT_MAX_REJECT_RATIO = 0.05
# ...once at least this many of its rows were rejected: one bad row alone never fails a run (README,
# "Rejects": it is reported and alerted on; from two on, max_reject_ratio decides as it always did).
DEFAULT_MIN_REJECTS_TO_FAIL = 2
# The merge DAG's wait: how often to look for a paying customer, and for how long.
DEFAULT_LOOKUP_INTERVAL_SECONDS = 60.0
DEFAULT_LOOKUP_TIMEOUT_SECONDS = 1200.0
# Mirror deletes: above this share of the customers mogulflow synced in a data source, a person approves.
DEFAULT_MAX_DELETE_RATIO = 0.01
# How long a run waits for that person; no answer in time is a rejection (and an alert).
DEFAULT_APPROVAL_TIMEOUT_HOURS = 12.0

# ---- mogulflow's own tables (declared in mogulflow/sql/mogulflow_tables.sql) -------------------------
RUNS_TABLE = "mogulflow_runs"
REJECTS_TABLE = "mogulflow_rejects"
STATE_TABLE = "mogulflow_sync_state"
RECONCILIATION_TABLE = "mogulflow_reconciliation"
STAGING_TABLE = "mogulflow_staging"
# What mogulflow created itself (the only objects a mirror may delete), and the deletes' audit.
CREATED_TABLE = "mogulflow_created"
DELETIONS_TABLE = "mogulflow_deletions"
DELETE_PLAN_TABLE = "mogulflow_delete_plan"
ERASURES_TABLE = "mogulflow_erasures"
APPROVALS_TABLE = "mogulflow_approvals"
# The optional source table of erasure requests (the contract's `lead_erasures`).
LEAD_ERASURES_TABLE = "lead_erasures"

# ---- how much detail a run keeps -----------------------------------------------------------------
# How many row errors a report carries to the run's account (the rest are in the task log).
ERRORS_KEPT = 50
# How many example ids a run reports per kind of change, reject or wait (dry runs, log lines).
SAMPLE_SIZE = 5

#: Between the identity columns of a composite identity: what `mogulflow_sync_state` keys an attribute
#: or a tag by (`lead_id/key`, `lead_id/tag`); a key holds no `/`, and a lead id and a tag rarely do.
IDENTITY_SEPARATOR = "/"
