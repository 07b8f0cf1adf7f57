"""Preflight: check a setup before a run touches anything, and list every problem at once.

Both connections resolve and have the right type; the API key works (`/v1/ping`); every extract
SQL runs against the warehouse and returns the columns mogulflow needs, with usable types (when it
does not, the contract's source table is compared column by column); mogulflow's own tables can be
created or have the columns it writes. Each DAG runs it as its `preflight` task; a data engineer
runs the same check before the first night:

    mogulflow preflight [--dag chartmogul_leads_trials|chartmogul_merge_converted_leads]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from mogulflow.chartmogul.retry import RetryPolicy
from mogulflow.extract.source_rows import TEMPLATES, optional_sources, window_params
from mogulflow.extract.source_tables import SOURCE_TABLES, SourceTable
from mogulflow.failures import describe, is_permanent
from mogulflow.values.constants import CHARTMOGUL_CONN_ID, WAREHOUSE_CONN_ID
from mogulflow.values.entities import OPTIONAL_ENTITIES, Entity, Window
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.sql_files import read_sql, sql_path

# The ping is a quick verdict: a few attempts, not the loads' full retry budget. An API that is
# down fails the preflight as an outage, which Airflow retries with the task.
PING_RETRY = RetryPolicy(max_attempts=3, max_elapsed=20.0)
# A column of mogulflow's own table, as mogulflow_tables.sql declares it: "    name  TYPE ...".
_DECLARED_COLUMN = re.compile(
    r"^\s+([a-z_]+)\s+(TEXT|TIMESTAMP|BOOLEAN|BIGINT|INTEGER|DOUBLE|DATE|BLOB)\b", re.MULTILINE
)
_DECLARED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the setup: where, what and what to do; `permanent` unless an outage."""

    subject: str
    message: str
    permanent: bool = True

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass(frozen=True)
class PreflightReport:
    """What the preflight checked, and every problem it found."""

    checked: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the setup is ready for a run."""
        return not self.problems

    @property
    def permanent(self) -> bool:
        """Whether at least one problem is a mistake (no retry fixes it)."""
        return any(problem.permanent for problem in self.problems)

    def summary(self) -> str:
        """Every problem, in one line."""
        return f"preflight found {len(self.problems)} problem(s): " + "; ".join(map(str, self.problems))


def _problem(subject: str, error: BaseException) -> Problem:
    return Problem(subject, describe(error), is_permanent(error))


def check_setup(
    entities: Sequence[Entity],
    *,
    open_warehouse: Callable[[], Warehouse],
    ping: Callable[[], bool],
    warehouse_conn_id: str = WAREHOUSE_CONN_ID,
    chartmogul_conn_id: str = CHARTMOGUL_CONN_ID,
) -> PreflightReport:
    """Run every check; `open_warehouse` and `ping` come from the connections (see `airflow_checks`)."""
    checked: list[str] = []
    problems: list[Problem] = []
    try:
        if ping():
            checked.append(f"connection {chartmogul_conn_id}: the API key works (/v1/ping)")
        else:
            problems.append(
                Problem(f"connection {chartmogul_conn_id}", "the API answered /v1/ping without 'pong!'")
            )
    except Exception as error:
        problems.append(_problem(f"connection {chartmogul_conn_id}", error))
    try:
        warehouse = open_warehouse()
    except Exception as error:
        problems.append(_problem(f"connection {warehouse_conn_id}", error))
        return PreflightReport(tuple(checked), tuple(problems))
    try:
        checked.append(f"connection {warehouse_conn_id}: opened ({warehouse.dialect.name})")
        own = _check_own_tables(warehouse)
        problems += own
        if not own:
            checked.append("mogulflow's own tables: present, with every column mogulflow writes")
        for entity in entities:
            found = _check_extract(warehouse, SOURCE_TABLES[entity])
            problems += found
            if not found:
                checked.append(f"{sql_path(TEMPLATES[entity])}: runs, returns every column mogulflow needs")
        if Entity.LEAD in entities:
            checked += _check_optional(warehouse, problems)
    finally:
        warehouse.close()
    return PreflightReport(tuple(checked), tuple(problems))


def _check_own_tables(warehouse: Warehouse) -> list[Problem]:
    try:
        ensure_tables(warehouse)
    except Exception as error:
        return [_problem("mogulflow's own tables", error)]
    problems = []
    for table, body in _DECLARED_TABLE.findall(read_sql("mogulflow_tables.sql")):
        present = set(warehouse.query_frame(f"SELECT * FROM {table} LIMIT 0").columns)
        for column, kind in _DECLARED_COLUMN.findall(body):
            if column not in present:
                problems.append(
                    Problem(
                        f"table {table}",
                        f"column {column} is missing (an older layout?): add it "
                        f"(ALTER TABLE {table} ADD COLUMN {column} {kind}) or drop the table to let "
                        "mogulflow create it again",
                    )
                )
    return problems


def _check_optional(warehouse: Warehouse, problems: list[Problem]) -> list[str]:
    """The optional tables (attributes, tags): a missing one turns its feature off, it is no problem;
    one that is there must give every column. Returns what was checked; adds its problems."""
    checked = []
    present = optional_sources(warehouse)
    for entity in OPTIONAL_ENTITIES:
        if entity not in present:
            checked.append(f"{entity.table}: not in the warehouse: {entity}s are off (an optional table)")
            continue
        found = _check_extract(warehouse, SOURCE_TABLES[entity])
        problems += found
        if not found:
            checked.append(f"{sql_path(TEMPLATES[entity])}: runs, returns every column: {entity}s are on")
    return checked


def _check_extract(warehouse: Warehouse, table: SourceTable) -> list[Problem]:
    """Run the entity's extract SQL for zero rows; compare what it returns with what mogulflow needs."""
    path = sql_path(TEMPLATES[table.entity])
    try:
        sql = read_sql(TEMPLATES[table.entity])
    except FileNotFoundError as error:
        return [_problem(str(path), error)]
    params = window_params(Window(None, None, True), "")
    try:
        frame = warehouse.query_frame(
            f"SELECT * FROM ({sql.strip().rstrip(';')}) AS preflight LIMIT 0", params
        )
    except Exception as error:
        if not is_permanent(error):
            return [_problem(str(path), error)]
        first_line = " ".join(str(error).split("\n")[0].split())
        columns = _compare_source_table(warehouse, table)
        return columns or [Problem(str(path), f"the warehouse refused this SQL: {first_line}; fix the SQL")]
    return _compare_returned_columns(frame, table, str(path))


def _compare_source_table(warehouse: Warehouse, table: SourceTable) -> list[Problem]:
    """Every column of the contract's source table that the warehouse lacks (or the missing table)."""
    name = table.entity.table
    # The warehouse's own catalog query: scoped to its schema, and upper-case names on Snowflake.
    present = {column.lower() for column in warehouse.column_names(name)}
    if not present:
        return [
            Problem(
                f"table {name}",
                "does not exist in the warehouse: create it (schema.sql, written by "
                f"`mogulflow sql --into DIR`, shows its columns) or "
                f"point {TEMPLATES[table.entity]} at your table",
            )
        ]
    return [
        Problem(
            f"table {name}",
            f"column {column} is missing: add it, or edit {TEMPLATES[table.entity]} to return it "
            f"(e.g. SELECT your_column AS {column})",
        )
        for column in table.columns
        if column not in present
    ]


def _compare_returned_columns(frame: pd.DataFrame, table: SourceTable, subject: str) -> list[Problem]:
    problems = []
    returned = {str(column).lower(): column for column in frame.columns}
    for column in table.columns:
        if column not in returned:
            problems.append(Problem(subject, f"returns no column {column}: select it (… AS {column})"))
            continue
        dtype = frame[returned[column]].dtype
        if column in table.timestamps and not (
            pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
        ):
            problems.append(
                Problem(subject, f"column {column} has type {dtype}; mogulflow needs a timestamp (UTC)")
            )
        if column in table.integers and (
            pd.api.types.is_bool_dtype(dtype)
            or not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_object_dtype(dtype))
        ):
            problems.append(Problem(subject, f"column {column} has type {dtype}; mogulflow needs an integer"))
    return problems
