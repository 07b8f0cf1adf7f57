"""The warehouse as mogulflow sees it: one DB-API connection and the dialect it speaks.

SQL in `mogulflow/sql/` is written with named `:param` placeholders; `bind` turns them into the driver's
own parameter style, so mogulflow never formats a value into SQL text itself. Inserts and upserts take
each dialect's fastest correct path (`mogulflow.warehouse.dialects` says which).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from mogulflow.values.errors import SetupError
from mogulflow.warehouse.dialects import (
    MAX_PARAMS_PER_STATEMENT,
    ColumnKind,
    Dialect,
    declared_tables,
    dialect_named,
    is_create_table,
    render_create_table,
    split_statements,
)
from mogulflow.warehouse.sql_files import read_sql

# `:name`, but not PostgreSQL's `::type` cast, nor inside a `'...'` literal or a `--` comment.
_PARAM = re.compile(r"'(?:[^']|'')*'|--[^\n]*|(?<![:\w]):([A-Za-z_]\w*)")

DEFAULT_CHUNK_ROWS = 100_000
# BigQuery refuses query texts above 1 MB; Airflow's cursor formats the values into the text.
MAX_STATEMENT_CHARS = 500_000
# The file declaring mogulflow's own tables (their column types drive the casts of merged values).
OWN_TABLES_FILE = "mogulflow_tables.sql"
# Redshift's MERGE reads its source from a table, not a subquery: rows go here first (per session).
UPSERT_SOURCE_TABLE = "mogulflow_upsert_source"
# A DuckDB memory limit low enough to evict the cached blocks of its tables, set for a moment only.
EVICTING_MEMORY_LIMIT = "32MB"


@dataclass(frozen=True)
class BoundStatement:
    """SQL in the driver's paramstyle with its parameters in the matching shape (None: none)."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any] | None


def bind(sql: str, params: Mapping[str, Any], dialect: Dialect | str) -> BoundStatement:
    """Turn `:name` placeholders into the dialect's paramstyle (`?`, `%s` or `%(name)s`).

    Raises KeyError naming the placeholder when `params` lacks one. SQL without placeholders is
    returned as it is, with no parameters (a driver then reads `%` literally).
    """
    dialect = dialect_named(dialect)
    style = dialect.paramstyle
    if all(match.group(1) is None for match in _PARAM.finditer(sql)):
        return BoundStatement(sql, None)
    ordered: list[Any] = []
    named: dict[str, Any] = {}

    def value_of(name: str) -> Any:
        if name not in params:
            raise KeyError(f"SQL placeholder :{name} has no value (given: {sorted(params)})")
        value = params[name]
        return _as_text_value(value) if dialect.formats_values_into_text else value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # a string literal or a comment: leave it alone
            return match.group(0)
        if style == "pyformat":
            named[name] = value_of(name)
            return f"%({name})s"
        ordered.append(value_of(name))
        return "?" if style == "qmark" else "%s"

    if style == "qmark":
        return BoundStatement(_PARAM.sub(replace, sql), ordered)
    # `%`-style drivers read every `%` of the text: a literal one is written `%%`
    text = _PARAM.sub(replace, sql.replace("%", "%%"))
    return BoundStatement(text, named if style == "pyformat" else ordered)


def naive_utc(moment: datetime | None) -> datetime | None:
    """A timestamp as mogulflow's tables and the extract parameters hold it: naive, in UTC."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _as_text_value(value: Any) -> Any:
    """A value Airflow's BigQuery cursor can format into SQL: it quotes strings and str()s the rest,
    so a datetime goes as an ISO string (BigQuery reads a string literal as a timestamp where one is
    expected) and a missing value as None (NULL)."""
    if value is None or (not isinstance(value, (str, bytes)) and _is_missing(value)):
        return None
    if isinstance(value, datetime):
        return naive_utc(value).isoformat(sep=" ")  # type: ignore[union-attr]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # sequences and other non-scalars are not missing
        return False


class Warehouse:
    """A thin, dialect-aware wrapper over one open DB-API connection.

    The caller owns the connection's lifetime (`close()` closes it). `schema` names the dataset or
    schema the connection works in where a dialect's catalog query needs it (BigQuery).
    """

    def __init__(self, connection: Any, dialect: Dialect | str, *, schema: str | None = None) -> None:
        self.connection = connection
        self.dialect: Dialect = dialect_named(dialect)
        self.schema = schema

    def __repr__(self) -> str:
        return f"Warehouse(dialect={self.dialect.name!r})"

    @classmethod
    def open_duckdb(cls, path: str) -> Warehouse:
        """Open (or create) a DuckDB database file; used by tests, the demo and the CLI."""
        import duckdb

        return cls(duckdb.connect(path), "duckdb")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement and commit."""
        with self._cursor() as cursor:
            _run(cursor, bind(sql, params or {}, self.dialect))
        self.connection.commit()

    def execute_script(self, sql: str) -> None:
        """Run several `;`-separated statements without parameters, then commit.

        A CREATE TABLE written with neutral types (TEXT, TIMESTAMP, BOOLEAN, BIGINT, INTEGER, DOUBLE,
        DATE, BLOB) runs in this dialect's own types.
        """
        with self._cursor() as cursor:
            for statement in split_statements(sql):
                if is_create_table(statement):
                    statement = render_create_table(statement, self.dialect)
                cursor.execute(statement)
        self.connection.commit()

    def query_frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return every row as one DataFrame."""
        chunks = list(self.iter_frames(sql, params))
        if len(chunks) == 1:
            return chunks[0]
        return pd.concat(chunks, ignore_index=True)

    def iter_frames(
        self, sql: str, params: Mapping[str, Any] | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Run a query and yield its rows in DataFrames of at most about `chunk_rows` rows.

        Always yields at least one (possibly empty) frame, so callers keep the column names. Column
        names come lower-case and timestamps as naive UTC, whatever the warehouse.
        """
        bound = bind(sql, params or {}, self.dialect)
        with self._cursor() as cursor:
            _run(cursor, bound)
            if self.dialect.insert_style == "dataframe":  # DuckDB
                yield from _duckdb_frames(cursor, chunk_rows)
                return
            description = list(cursor.description or [])
            columns = [str(d[0]) for d in description]
            if self.dialect.lower_case_result_names:
                columns = [name.lower() for name in columns]
            first = True
            while True:
                rows = cursor.fetchmany(chunk_rows)
                if not rows and not first:
                    break
                first = False
                frame = pd.DataFrame.from_records(rows, columns=columns)
                if self.dialect.formats_values_into_text:
                    frame = _typed_bigquery_frame(frame, description)
                yield frame
                if not rows:
                    break

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor, closed afterwards. After a failed statement the transaction is rolled back:
        PostgreSQL refuses every later statement until then, so a caller that goes on (the
        preflight, a retry) finds the connection usable."""
        cursor = self.connection.cursor()
        try:
            yield cursor
        except Exception:
            # DuckDB without an open transaction, BigQuery without transactions: nothing to undo
            with contextlib.suppress(Exception):
                self.connection.rollback()
            raise
        finally:
            cursor.close()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        frame = self.query_frame(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    def table_exists(self, table: str) -> bool:
        """Whether a table of that name exists in the connection's current schema (or dataset)."""
        return bool(self.scalar(self._catalog_sql(self.dialect.table_exists_sql), {"table": table}))

    def column_names(self, table: str) -> set[str]:
        """The lower-case column names of a table in the current schema (empty: no such table)."""
        frame = self.query_frame(self._catalog_sql(self.dialect.columns_sql), {"table": table})
        return {str(name).lower() for name in frame.iloc[:, 0]} if not frame.empty else set()

    def _catalog_sql(self, sql: str) -> str:
        """A catalog query scoped to this connection's schema (BigQuery: qualified by the dataset)."""
        if "{schema}" not in sql:
            return sql
        if not self.schema:
            raise SetupError(
                f"the {self.dialect.name} warehouse has no default dataset: set it in the connection "
                "(docs/warehouses.md)"
            )
        return sql.format(schema=self.schema)

    def upsert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], key: Sequence[str]
    ) -> None:
        """Insert rows, replacing any row with the same `key`; one transaction where the warehouse
        has them. Of several rows sharing a key, the last one wins."""
        if not rows:
            return
        rows = _last_row_per_key(columns, rows, key)
        if self.dialect.upsert_style == "on_conflict":
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
            conflict = (
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
                if updates
                else "ON CONFLICT DO NOTHING"
            )
            self._insert(table, columns, rows, suffix=conflict)
        elif self.dialect.upsert_style == "merge":
            with self._cursor() as cursor:
                for batch in self._batches(columns, rows):
                    source, params = self._values_source(table, columns, batch)
                    merge = merge_sql(table, columns, key, source=f"({source})", target_alias="target")
                    _run(cursor, bind(merge, params, self.dialect))
            self.connection.commit()
        else:  # merge_from_temp_table: Redshift
            source = UPSERT_SOURCE_TABLE
            column_list = ", ".join(columns)
            with self._cursor() as cursor:
                # the target's column types, without its NOT NULLs: rows may carry only some columns
                cursor.execute(f"CREATE TEMP TABLE {source} AS SELECT {column_list} FROM {table} WHERE 1 = 0")
                for batch in self._batches(columns, rows):
                    _run(cursor, self._multi_row_insert(source, columns, batch, casts_from=table))
                cursor.execute(merge_sql(table, columns, key, source=source, target_alias=None))
                cursor.execute(f"DROP TABLE {source}")
            self.connection.commit()

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append rows in one transaction (where the warehouse has them)."""
        if rows:
            self._insert(table, columns, rows, suffix="")

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], suffix: str) -> None:
        column_list = ", ".join(columns)
        with self._cursor() as cursor:
            if self.dialect.insert_style == "dataframe":
                # Row-by-row executemany is slow in DuckDB; a registered frame inserts in one pass.
                frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
                cursor.register("_mogulflow_rows", frame)
                try:
                    select = f"SELECT {column_list} FROM _mogulflow_rows"
                    cursor.execute(f"INSERT INTO {table} ({column_list}) {select} {suffix}")
                finally:
                    cursor.unregister("_mogulflow_rows")
            elif self.dialect.insert_style == "executemany":
                placeholders = ", ".join(["%s"] * len(columns))
                cursor.executemany(
                    f"INSERT INTO {table} ({column_list}) VALUES ({placeholders}) {suffix}", list(rows)
                )
            else:  # multi_row: one statement per batch
                for batch in self._batches(columns, rows):
                    _run(cursor, self._multi_row_insert(table, columns, batch, casts_from=table))
        self.connection.commit()

    def _batches(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> Iterator[list[Sequence[Any]]]:
        """Rows in batches one statement can carry: the dialect's row count, Redshift's parameter
        limit and BigQuery's query-text limit."""
        max_rows = max(1, min(self.dialect.rows_per_statement, MAX_PARAMS_PER_STATEMENT // len(columns)))
        batch: list[Sequence[Any]] = []
        chars = 0
        for row in rows:
            size = sum(len(str(value)) + 16 for value in row)
            if batch and (len(batch) >= max_rows or chars + size > MAX_STATEMENT_CHARS):
                yield batch
                batch, chars = [], 0
            batch.append(row)
            chars += size
        if batch:
            yield batch

    def _placeholders(self, table: str, columns: Sequence[str], row_number: int) -> list[str]:
        """`:v{row}_{column}` per column, cast to the column's type where the dialect needs it."""
        kinds = own_table_kinds().get(table, {}) if self.dialect.cast_merged_values else {}
        placeholders = []
        for index, column in enumerate(columns):
            placeholder = f":v{row_number}_{index}"
            kind = kinds.get(column)
            if kind is not None:
                placeholder = f"CAST({placeholder} AS {self.dialect.column_types[kind]})"
            placeholders.append(placeholder)
        return placeholders

    def _values_source(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, dict[str, Any]]:
        """`SELECT ... AS c UNION ALL SELECT ...` of bound rows, and its parameters."""
        selects = []
        for number in range(len(rows)):
            values = self._placeholders(table, columns, number)
            selects.append("SELECT " + ", ".join(f"{v} AS {c}" for v, c in zip(values, columns, strict=True)))
        return "\nUNION ALL ".join(selects), _row_params(rows)

    def _multi_row_insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, casts_from: str
    ) -> BoundStatement:
        values = ",\n".join(
            f"({', '.join(self._placeholders(casts_from, columns, number))})" for number in range(len(rows))
        )
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES\n{values}"
        return bind(sql, _row_params(rows), self.dialect)

    def release_cached_blocks(self) -> None:
        """Let an embedded warehouse give back the table blocks it cached while a big scan read them.

        DuckDB keeps every block it read in its buffer pool until its memory limit presses (a scan of
        a million sync-state payloads: ~190 MiB of the task's memory, never needed again): lowering the
        limit for a moment evicts them, and the limit the connection had is set again. Server
        warehouses hold their cache in their own processes: nothing to do.
        """
        if self.dialect.name != "duckdb":
            return
        limit = self.scalar("SELECT current_setting('memory_limit')")
        self.execute(f"SET memory_limit = '{EVICTING_MEMORY_LIMIT}'")
        self.execute(f"SET memory_limit = '{limit}'")

    def close(self) -> None:
        """Close the underlying connection."""
        self.connection.close()


def merge_sql(
    table: str, columns: Sequence[str], key: Sequence[str], *, source: str, target_alias: str | None
) -> str:
    """`MERGE INTO table USING source AS source ...`: update the rows matching `key`, insert the rest.

    Redshift names the target by its table name (no alias) and wants both WHEN clauses: a table of
    key columns only updates a key column to itself.
    """
    target = target_alias or table
    alias = f" AS {target_alias}" if target_alias else ""
    on = " AND ".join(f"{target}.{k} = source.{k}" for k in key)
    updates = [c for c in columns if c not in key] or [key[0]]
    return (
        f"MERGE INTO {table}{alias}\nUSING {source} AS source\nON {on}\n"
        f"WHEN MATCHED THEN UPDATE SET {', '.join(f'{c} = source.{c}' for c in updates)}\n"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'source.{c}' for c in columns)})"
    )


@functools.cache
def _own_table_kinds(sql: str) -> dict[str, dict[str, ColumnKind]]:
    return {name: table.kinds() for name, table in declared_tables(sql).items()}


def own_table_kinds() -> dict[str, dict[str, ColumnKind]]:
    """mogulflow's own tables, as declared: table → column → neutral kind."""
    return _own_table_kinds(read_sql(OWN_TABLES_FILE))


def _row_params(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {f"v{number}_{index}": value for number, row in enumerate(rows) for index, value in enumerate(row)}


def _last_row_per_key(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], key: Sequence[str]
) -> list[Sequence[Any]]:
    """One row per key, the last given: DuckDB refuses to update a row twice in one statement and
    Snowflake calls such a MERGE nondeterministic."""
    positions = [list(columns).index(k) for k in key]
    latest: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        latest[tuple(row[p] for p in positions)] = row
    return list(latest.values())


def _run(cursor: Any, bound: BoundStatement) -> None:
    if bound.params is None:
        cursor.execute(bound.sql)
    else:
        cursor.execute(bound.sql, bound.params)


def _duckdb_frames(cursor: Any, chunk_rows: int) -> Iterator[pd.DataFrame]:
    # DuckDB hands out whole column vectors: far faster than tuples for big extracts.
    vectors = max(1, chunk_rows // 2048)
    first = True
    while True:
        frame = cursor.fetch_df_chunk(vectors)
        if frame.empty and not first:
            break
        first = False
        yield frame
        if frame.empty:
            break


def _typed_bigquery_frame(frame: pd.DataFrame, description: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Airflow's BigQuery cursor returns TIMESTAMP as epoch seconds and DATETIME as text: make both
    naive UTC timestamps, as every other warehouse returns them."""
    for name, type_code in zip(frame.columns, (d[1] for d in description), strict=True):
        if type_code == "TIMESTAMP":
            frame[name] = pd.to_datetime(frame[name], unit="s")
        elif type_code == "DATETIME":
            frame[name] = pd.to_datetime(frame[name])
    return frame
