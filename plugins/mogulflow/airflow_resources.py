"""Airflow-side resources the DAGs use: connections turned into a warehouse or a ChartMogul client,
and the `chartmogul_api` pool. The pipeline steps themselves never import Airflow.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from mogulflow.defaults import CHARTMOGUL_CONN_ID, POOL_NAME, WAREHOUSE_CONN_ID
from mogulflow.model import SetupError
from mogulflow.warehouse import Dialect, Warehouse

if TYPE_CHECKING:
    from mogulflow.api.client import ChartMogulClient

log = logging.getLogger(__name__)

# Slots: tasks writing to ChartMogul at once across all runs. Each task paces itself to the
# connection's requests_per_second, so more than one slot would multiply the account's rate.
POOL_SLOTS = 1
POOL_DESCRIPTION = "Tasks that write to ChartMogul (mogulflow); keeps concurrent runs within the API's limits"

_DIALECTS: dict[str, Dialect] = {"duckdb": "duckdb", "postgres": "postgres", "postgresql": "postgres"}
# A DuckDB file has one writer process at a time: a task of a concurrent run (a backfill beside the
# nightly run) waits for the lock this long before failing (and being retried by Airflow).
DUCKDB_LOCK_WAIT_ENV = "MOGULFLOW_DUCKDB_LOCK_WAIT_SECONDS"
DEFAULT_DUCKDB_LOCK_WAIT_SECONDS = 600.0


def open_warehouse(conn_id: str = WAREHOUSE_CONN_ID, *, lock_wait_seconds: float | None = None) -> Warehouse:
    """Open the warehouse named by an Airflow connection of type duckdb or postgres.

    `lock_wait_seconds`: how long to wait for a DuckDB file another process is writing (default: the
    environment's `MOGULFLOW_DUCKDB_LOCK_WAIT_SECONDS`, else 600 s; a web page wants far less).
    """
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    dialect = _DIALECTS.get((connection.conn_type or "").lower())
    if dialect is None:
        raise SetupError(
            f"connection {conn_id!r} has type {connection.conn_type!r}; mogulflow's SQL supports "
            "'duckdb' (host = database file path) and 'postgres': recreate it with one of those types"
        )
    hook: Any = connection.get_hook()
    if dialect == "duckdb":
        return Warehouse(_wait_for_duckdb_lock(hook.get_conn, lock_wait_seconds), dialect)
    return Warehouse(hook.get_conn(), dialect)


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
    from mogulflow.hook import ChartMogulHook

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


if __name__ == "__main__":
    ensure_pool()
    print(f"pool {POOL_NAME} ready")
