"""Connections turned into a warehouse or a ChartMogul client, and the `chartmogul_api` pool.

Airflow-side resources the DAGs use: connections turned into a warehouse or a ChartMogul client,
and the `chartmogul_api` pool. The pipeline steps themselves never import Airflow.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from mogulflow.values.constants import CHARTMOGUL_CONN_ID, POOL_NAME, WAREHOUSE_CONN_ID
from mogulflow.values.errors import SetupError
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.dialects import (
    BIGQUERY,
    DUCKDB,
    Dialect,
    dialect_for_conn_type,
    supported_conn_types,
)

if TYPE_CHECKING:
    from mogulflow.chartmogul.client import ChartMogulClient

log = logging.getLogger(__name__)

# Slots: tasks writing to ChartMogul at once across all runs. Each task paces itself to the
# connection's requests_per_second, so more than one slot would multiply the account's rate.
POOL_SLOTS = 1
POOL_DESCRIPTION = "Tasks that write to ChartMogul (mogulflow); keeps concurrent runs within the API's limits"

# A DuckDB file has one writer process at a time: a task of a concurrent run (a backfill beside the
# nightly run) waits for the lock this long before failing (and being retried by Airflow).
DUCKDB_LOCK_WAIT_ENV = "MOGULFLOW_DUCKDB_LOCK_WAIT_SECONDS"
DEFAULT_DUCKDB_LOCK_WAIT_SECONDS = 600.0


def open_warehouse(conn_id: str = WAREHOUSE_CONN_ID, *, lock_wait_seconds: float | None = None) -> Warehouse:
    """Open the warehouse named by an Airflow `common.sql` connection (duckdb, postgres, snowflake,
    google_cloud_platform for BigQuery, redshift) through the connection's own hook.

    `lock_wait_seconds`: how long to wait for a DuckDB file another process is writing (default: the
    environment's `MOGULFLOW_DUCKDB_LOCK_WAIT_SECONDS`, else 600 s; a web page wants far less).
    Raises SetupError, saying what to do, for a type mogulflow does not speak or a missing provider.
    """
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    dialect = dialect_for_conn_type(connection.conn_type)
    if dialect is None:
        raise SetupError(
            f"connection {conn_id!r} has type {connection.conn_type!r}; mogulflow's SQL supports "
            f"{supported_conn_types()}: recreate it with one of those types (docs/warehouses.md shows "
            "the fields of each)"
        )
    hook = _sql_hook(conn_id, connection, dialect)
    if dialect is DUCKDB:
        return Warehouse(_wait_for_duckdb_lock(hook.get_conn, lock_wait_seconds), dialect)
    if dialect is BIGQUERY:
        return Warehouse(hook.get_conn(), dialect, schema=_bigquery_default_dataset(conn_id, hook))
    return Warehouse(hook.get_conn(), dialect)


def _sql_hook(conn_id: str, connection: Any, dialect: Dialect) -> Any:
    """The connection's `DbApiHook` (for BigQuery: its hook in standard SQL, not legacy SQL)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    try:
        importlib.metadata.distribution(dialect.provider)
    except importlib.metadata.PackageNotFoundError:
        raise SetupError(
            f"connection {conn_id!r} is a {dialect.name} warehouse but its Airflow provider is not "
            f"installed: pip install {dialect.provider} (docs/warehouses.md)"
        ) from None
    if dialect is BIGQUERY:
        # A google_cloud_platform connection's own hook is not a SQL hook: BigQuery's is.
        from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

        hook: Any = BigQueryHook(gcp_conn_id=conn_id, use_legacy_sql=False)
    else:
        hook = connection.get_hook()
    if not isinstance(hook, DbApiHook):
        raise SetupError(
            f"connection {conn_id!r} of type {connection.conn_type!r} gives {type(hook).__name__}, "
            f"not a common.sql DbApiHook: upgrade {dialect.provider}"
        )
    return hook


def _bigquery_default_dataset(conn_id: str, hook: Any) -> str:
    """The dataset unqualified table names resolve to: the connection's
    `api_resource_configs.query.defaultDataset.datasetId` extra."""
    configs = hook.api_resource_configs or {}
    if isinstance(configs, str):  # the connection form stores the extra as JSON text
        configs = hook.api_resource_configs = json.loads(configs)
    dataset = (configs.get("query") or {}).get("defaultDataset") or {}
    if not dataset.get("datasetId"):
        raise SetupError(
            f"BigQuery connection {conn_id!r} has no default dataset: add to its extra "
            '"api_resource_configs": {"query": {"defaultDataset": {"projectId": "PROJECT", '
            '"datasetId": "DATASET"}}} (the dataset holding the source tables and mogulflow\'s own)'
        )
    return str(dataset["datasetId"])


def _wait_for_duckdb_lock(connect: Any, budget: float | None = None) -> Any:
    """Open a DuckDB connection, waiting while another process holds the file's lock."""
    import duckdb

    if budget is None:
        budget = float(os.environ.get(DUCKDB_LOCK_WAIT_ENV) or DEFAULT_DUCKDB_LOCK_WAIT_SECONDS)
    deadline = time.monotonic() + budget
    pause = 0.5
    while True:
        try:
            return connect()
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() + pause > deadline:
                raise
            log.info(
                "The DuckDB warehouse is locked by another task (a concurrent run); waiting %.1f s.", pause
            )
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


def chartmogul_client(conn_id: str = CHARTMOGUL_CONN_ID) -> ChartMogulClient:
    """A ChartMogul client configured from an Airflow connection of type chartmogul."""
    from mogulflow.airflow.hook import ChartMogulHook

    return ChartMogulHook(chartmogul_conn_id=conn_id).get_client()


def ensure_pool(slots: int = POOL_SLOTS) -> None:
    """Create the `chartmogul_api` pool if it is missing (an existing pool keeps its slots)."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.query(Pool).filter(Pool.pool == POOL_NAME).first() is None:
            Pool.create_or_update_pool(
                POOL_NAME, slots, POOL_DESCRIPTION, include_deferred=False, session=session
            )
