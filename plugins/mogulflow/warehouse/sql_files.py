"""SQL files: where mogulflow's SQL lives (`include/sql/`, or `$MOGULFLOW_SQL_DIR`) and reading it.

Each file is written once, in SQL that DuckDB and PostgreSQL read as it is and that the other
warehouses read too (types of CREATE TABLE are rendered per warehouse by `mogulflow.warehouse.dialects`).
Where one warehouse needs other SQL (its own date functions, casts or quoting), a file of the same name
in the warehouse's folder (`include/sql/snowflake/extract_leads.sql`) replaces the shared one for it.
"""

from __future__ import annotations

import os
from pathlib import Path

# include/sql sits beside plugins/ in the repository; deployments may point elsewhere.
SQL_DIR_ENV = "MOGULFLOW_SQL_DIR"
_REPO_SQL_DIR = Path(__file__).resolve().parents[3] / "include" / "sql"


def sql_dir() -> Path:
    """Where the SQL templates live: `$MOGULFLOW_SQL_DIR`, else the repository's include/sql."""
    return Path(os.environ.get(SQL_DIR_ENV) or _REPO_SQL_DIR)


def sql_path(name: str, dialect: str | None = None) -> Path:
    """The file mogulflow reads for `name`: the dialect's own version when there is one."""
    if dialect is not None:
        own = sql_dir() / str(dialect) / name
        if own.is_file():
            return own
    return sql_dir() / name


def read_sql(name: str, dialect: str | None = None) -> str:
    """The text of one SQL file from `sql_dir()` (the dialect's own version when there is one)."""
    path = sql_path(name, dialect)
    if not path.is_file():
        raise FileNotFoundError(
            f"SQL template {path} is missing; set ${SQL_DIR_ENV} to your include/sql folder"
        )
    return path.read_text()
