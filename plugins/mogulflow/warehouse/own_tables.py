"""mogulflow's own tables: created when missing, from `mogulflow_tables.sql` in each warehouse's types.

A table made by an older mogulflow gets the columns added since (each has a default or allows null),
so an upgrade needs no hand-written ALTER TABLE.
"""

from __future__ import annotations

import logging

from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.dialects import declared_tables
from mogulflow.warehouse.sql_files import read_sql

log = logging.getLogger(__name__)

OWN_TABLES_FILE = "mogulflow_tables.sql"
# A Warehouse whose tables were brought up to date once needs no second look in the same task.
_CHECKED_ATTRIBUTE = "_mogulflow_tables_checked"


def ensure_tables(warehouse: Warehouse) -> None:
    """Create mogulflow's tables when they are missing, and add the columns newer versions declare
    (idempotent)."""
    sql = read_sql(OWN_TABLES_FILE)
    warehouse.execute_script(sql)
    if getattr(warehouse, _CHECKED_ATTRIBUTE, False):
        return
    for table in declared_tables(sql).values():
        present = {
            str(c).lower() for c in warehouse.query_frame(f"SELECT * FROM {table.name} LIMIT 0").columns
        }
        for column in table.columns:
            if column.name in present or (column.not_null and column.default is None):
                continue
            kind = warehouse.dialect.column_types[column.kind]
            default = f" DEFAULT {column.default}" if column.default is not None else ""
            warehouse.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}")
            log.info(
                "Table %s: added column %s (declared by this version of mogulflow).", table.name, column.name
            )
    setattr(warehouse, _CHECKED_ATTRIBUTE, True)
