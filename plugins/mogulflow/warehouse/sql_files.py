"""SQL files: where mogulflow's SQL lives and reading it.

The default SQL ships inside the package (`mogulflow/sql/`: the extract templates, mogulflow's own
tables, the sample's source tables). A deployment changes it without touching the package: it puts
its own versions of some files in a folder and names the folder in `$MOGULFLOW_SQL_DIR`
(`mogulflow sql --into DIR` writes the defaults there to start from). A file in that folder replaces
the default of the same name; a file it does not hold comes from the package, so a folder holding
only an edited `extract_leads.sql` keeps working when a later release adds SQL files.

Each file is written once, in SQL that DuckDB and PostgreSQL read as it is and that the other
warehouses read too (types of CREATE TABLE are rendered per warehouse by `mogulflow.warehouse.dialects`).
Where one warehouse needs other SQL (its own date functions, casts or quoting), a file of the same
name in the warehouse's sub-folder (`snowflake/extract_leads.sql`) replaces the shared one for it.
Lookup order for `name` on `dialect`: the user's `dialect/name`, the user's `name`, the package's
`dialect/name`, the package's `name`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

#: The environment variable naming the user's own SQL folder (optional).
SQL_DIR_ENV = "MOGULFLOW_SQL_DIR"
#: The SQL the package ships (package data), read when the user's folder has no file of that name.
DEFAULT_SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def user_sql_dir() -> Path | None:
    """The user's own SQL folder (`$MOGULFLOW_SQL_DIR`), or None when it is not set."""
    value = os.environ.get(SQL_DIR_ENV)
    if not value:
        return None
    folder = Path(value)
    if not folder.is_dir():
        # A typo must not silently fall back to the defaults.
        raise FileNotFoundError(f"${SQL_DIR_ENV} names {folder}, which is not a folder")
    return folder


def sql_dir() -> Path:
    """The folder whose files win: the user's (`$MOGULFLOW_SQL_DIR`), else the package's defaults."""
    return user_sql_dir() or DEFAULT_SQL_DIR


def _candidates(name: str, dialect: str | None) -> Iterator[Path]:
    for folder in (user_sql_dir(), DEFAULT_SQL_DIR):
        if folder is None:
            continue
        if dialect is not None:
            yield folder / str(dialect) / name
        yield folder / name


def sql_path(name: str, dialect: str | None = None) -> Path:
    """The file mogulflow reads for `name` (on `dialect`): the first of the lookup order that exists."""
    candidates = list(_candidates(name, dialect))
    return next((path for path in candidates if path.is_file()), candidates[-1])


def read_sql(name: str, dialect: str | None = None) -> str:
    """The text of one SQL file, found as `sql_path` finds it."""
    path = sql_path(name, dialect)
    if not path.is_file():
        raise FileNotFoundError(
            f"SQL template {name} is missing: neither ${SQL_DIR_ENV} nor the package ({DEFAULT_SQL_DIR}) "
            "holds it; reinstall mogulflow"
        )
    return path.read_text()


def default_sql_files() -> list[Path]:
    """Every SQL file the package ships, dialect sub-folders included, relative to `DEFAULT_SQL_DIR`."""
    return sorted(p.relative_to(DEFAULT_SQL_DIR) for p in DEFAULT_SQL_DIR.rglob("*.sql"))
