"""mogulflow's own tables: created when missing, from `mogulflow_tables.sql` in each warehouse's types."""

from __future__ import annotations

from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.sql_files import read_sql


def ensure_tables(warehouse: Warehouse) -> None:
    """Create mogulflow's tables when they are missing (idempotent)."""
    warehouse.execute_script(read_sql("mogulflow_tables.sql"))
