"""Airflow-side resources the DAGs use: connections turned into a warehouse or a ChartMogul client,
and the `chartmogul_api` pool. The pipeline steps themselves never import Airflow.
"""

from __future__ import annotations

from typing import Any

from mogulflow.warehouse import Dialect, Warehouse

WAREHOUSE_CONN_ID = "warehouse_default"
CHARTMOGUL_CONN_ID = "chartmogul_default"
POOL_NAME = "chartmogul_api"
# Slots: tasks writing to ChartMogul at once across all runs. Each task paces itself to the
# connection's requests_per_second, so more than one slot would multiply the account's rate.
POOL_SLOTS = 1
POOL_DESCRIPTION = "Tasks that write to ChartMogul (mogulflow); keeps concurrent runs within the API's limits"

_DIALECTS: dict[str, Dialect] = {"duckdb": "duckdb", "postgres": "postgres", "postgresql": "postgres"}


def open_warehouse(conn_id: str = WAREHOUSE_CONN_ID) -> Warehouse:
    """Open the warehouse named by an Airflow connection of type duckdb or postgres."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    dialect = _DIALECTS.get((connection.conn_type or "").lower())
    if dialect is None:
        raise ValueError(
            f"connection {conn_id!r} has type {connection.conn_type!r}; mogulflow's SQL supports "
            "'duckdb' (host = database file path) and 'postgres'"
        )
    hook: Any = connection.get_hook()
    return Warehouse(hook.get_conn(), dialect)


def chartmogul_client(conn_id: str = CHARTMOGUL_CONN_ID) -> Any:
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
