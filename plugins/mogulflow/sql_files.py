"""SQL files: where mogulflow's SQL lives (`include/sql/`, or `$MOGULFLOW_SQL_DIR`) and reading it."""

from __future__ import annotations

import os
from pathlib import Path

# include/sql sits beside plugins/ in the repository; deployments may point elsewhere.
SQL_DIR_ENV = "MOGULFLOW_SQL_DIR"
_REPO_SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"


def sql_dir() -> Path:
    """Where the SQL templates live: `$MOGULFLOW_SQL_DIR`, else the repository's include/sql."""
    return Path(os.environ.get(SQL_DIR_ENV) or _REPO_SQL_DIR)


def read_sql(name: str) -> str:
    """The text of one SQL file from `sql_dir()`."""
    path = sql_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"SQL template {path} is missing; set ${SQL_DIR_ENV} to your include/sql folder"
        )
    return path.read_text()
