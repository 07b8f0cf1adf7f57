"""Defaults both DAGs and the steps share, written once. Plain constants: DAG files import them at
parse time, so nothing heavy may be imported here."""

from __future__ import annotations

WAREHOUSE_CONN_ID = "warehouse_default"
CHARTMOGUL_CONN_ID = "chartmogul_default"
# Tasks that write to ChartMogul run in this pool, so concurrent runs stay within the API's limits.
POOL_NAME = "chartmogul_api"

DEFAULT_DATA_SOURCE_NAME = "Leads"
# Above this share of rejected rows in an entity, that entity is not loaded (the contract's default).
DEFAULT_MAX_REJECT_RATIO = 0.05
# The merge DAG's wait: how often to look for a paying customer, and for how long (the contract's).
DEFAULT_LOOKUP_INTERVAL_SECONDS = 60.0
DEFAULT_LOOKUP_TIMEOUT_SECONDS = 1200.0
