"""mogulflow's own tables: created when missing, from `mogulflow_tables.sql` in each warehouse's types.

A table made by an older mogulflow gets the count columns added since (`BIGINT ... DEFAULT 0`, e.g.
`attributes_created`), so an upgrade needs no hand-written ALTER.
"""

from __future__ import annotations

import re

from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.sql_files import read_sql

# A table's declaration, and its count columns: "    name  BIGINT NOT NULL DEFAULT 0,".
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.DOTALL)
_COUNT_COLUMN = re.compile(r"^\s+([a-z_]+)\s+BIGINT NOT NULL DEFAULT 0\b", re.MULTILINE)


def ensure_tables(warehouse: Warehouse) -> None:
    """Create mogulflow's tables when they are missing, add count columns they lack (idempotent)."""
    script = read_sql("mogulflow_tables.sql")
    warehouse.execute_script(script)
    for table, body in _TABLE.findall(script):
        wanted = _COUNT_COLUMN.findall(body)
        if not wanted:
            continue
        present = warehouse.column_names(table)
        for column in wanted:
            if present and column not in present:
                warehouse.execute(f"ALTER TABLE {table} ADD COLUMN {column} BIGINT DEFAULT 0")
