"""What the monitoring page shows, read from the warehouse, every aggregate computed in SQL.

What the monitoring page shows, read from the warehouse: every count and average is computed in
SQL (DuckDB or PostgreSQL), so the page stays fast on a million leads; Python only shapes the
few aggregated rows into values.

Airflow-free: the app opens the warehouse and hands it in.

One module per part of the page; the names the app and tests use are re-exported here.
"""

from mogulflow.monitor.queries.funnel import Funnel, FunnelBucket, lead_funnel
from mogulflow.monitor.queries.lookup import Lookup, StateRow, look_up
from mogulflow.monitor.queries.merges import ChartMogulMerge, chartmogul_merges
from mogulflow.monitor.queries.overview import Overview, RunVerdict, overview
from mogulflow.monitor.queries.periods import GRAINS, Grain, Period
from mogulflow.monitor.queries.reconciliation import (
    Reconciliation,
    ReconciliationGroup,
    latest_reconciliation,
)
from mogulflow.monitor.queries.rejects import (
    REJECTS_CSV_COLUMNS,
    RejectExample,
    RejectGroup,
    Rejects,
    iter_rejects_csv_frames,
    rejects_by_rule,
)
from mogulflow.monitor.queries.runs import (
    MONITORED_DAG_IDS,
    DataSource,
    RunRow,
    list_data_sources,
    recent_runs,
)
from mogulflow.monitor.queries.segments import SplitFunnel, attribute_keys, funnel_by_attribute

__all__ = [
    "GRAINS",
    "MONITORED_DAG_IDS",
    "REJECTS_CSV_COLUMNS",
    "ChartMogulMerge",
    "DataSource",
    "Funnel",
    "FunnelBucket",
    "Grain",
    "Lookup",
    "Overview",
    "Period",
    "Reconciliation",
    "ReconciliationGroup",
    "RejectExample",
    "RejectGroup",
    "Rejects",
    "RunRow",
    "RunVerdict",
    "SplitFunnel",
    "StateRow",
    "attribute_keys",
    "chartmogul_merges",
    "funnel_by_attribute",
    "iter_rejects_csv_frames",
    "latest_reconciliation",
    "lead_funnel",
    "list_data_sources",
    "look_up",
    "overview",
    "recent_runs",
    "rejects_by_rule",
]
