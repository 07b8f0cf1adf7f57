"""The warehouse as mogulflow sees it: a DB-API connection that speaks DuckDB or PostgreSQL.

SQL in `include/sql/` is written with named `:param` placeholders; this module binds them in the
driver's own style, so values are always bound, never formatted into the text.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

Dialect = Literal["duckdb", "postgres"]

# `:name`, but not PostgreSQL's `::type` cast, nor inside a `'...'` literal or a `--` comment.
_PARAM = re.compile(r"'(?:[^']|'')*'|--[^\n]*|(?<![:\w]):([A-Za-z_]\w*)")

DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class BoundStatement:
    """SQL in the driver's paramstyle with its parameters in the matching shape."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any]


def bind(sql: str, params: Mapping[str, Any], dialect: Dialect) -> BoundStatement:
    """Turn `:name` placeholders into DuckDB's `?` or psycopg's `%(name)s`.

    Raises KeyError naming the placeholder when `params` lacks one.
    """
    ordered: list[Any] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # a string literal or a comment: leave it alone
            return match.group(0)
        if name not in params:
            raise KeyError(f"SQL placeholder :{name} has no value (given: {sorted(params)})")
        if dialect == "duckdb":
            ordered.append(params[name])
            return "?"
        return f"%({name})s"

    text = _PARAM.sub(replace, sql)
    if dialect == "duckdb":
        return BoundStatement(text, ordered)
    return BoundStatement(text.replace("%(", "\0").replace("%", "%%").replace("\0", "%("), dict(params))


class Warehouse:
    """A thin, dialect-aware wrapper over one open DB-API connection.

    The caller owns the connection's lifetime (`close()` closes it).
    """

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect: Dialect = dialect

    def __repr__(self) -> str:
        return f"Warehouse(dialect={self.dialect!r})"

    @classmethod
    def open_duckdb(cls, path: str) -> Warehouse:
        """Open (or create) a DuckDB database file; used by tests, the demo and the CLI."""
        import duckdb

        return cls(duckdb.connect(path), "duckdb")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement and commit."""
        bound = bind(sql, params or {}, self.dialect)
        with self._cursor() as cursor:
            cursor.execute(bound.sql, bound.params)
        self.connection.commit()

    def execute_script(self, sql: str) -> None:
        """Run several `;`-separated statements without parameters, then commit."""
        # Drop `--` comments first: a `;` inside one must not split a statement.
        text = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
        with self._cursor() as cursor:
            for statement in (part.strip() for part in text.split(";")):
                if statement:
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

        Always yields at least one (possibly empty) frame, so callers keep the column names.
        """
        bound = bind(sql, params or {}, self.dialect)
        with self._cursor() as cursor:
            cursor.execute(bound.sql, bound.params)
            columns = [d[0] for d in cursor.description]
            if self.dialect == "duckdb":
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
            else:
                first = True
                while True:
                    rows = cursor.fetchmany(chunk_rows)
                    if not rows and not first:
                        break
                    first = False
                    yield pd.DataFrame.from_records(rows, columns=columns)
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
            with contextlib.suppress(Exception):  # DuckDB without an open transaction: nothing to undo
                self.connection.rollback()
            raise
        finally:
            cursor.close()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        frame = self.query_frame(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    def table_exists(self, table: str) -> bool:
        """Whether a table of that name exists in the current schema."""
        return bool(
            self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = :table",
                {"table": table},
            )
        )

    def upsert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], key: Sequence[str]
    ) -> None:
        """Insert rows, replacing any row with the same `key`; one transaction."""
        if not rows:
            return
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
        conflict = (
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}" if updates else "ON CONFLICT DO NOTHING"
        )
        self._insert(table, columns, rows, suffix=conflict)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append rows in one transaction."""
        if rows:
            self._insert(table, columns, rows, suffix="")

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], suffix: str) -> None:
        column_list = ", ".join(columns)
        cursor = self.connection.cursor()
        try:
            if self.dialect == "duckdb":
                # Row-by-row executemany is slow in DuckDB; a registered frame inserts in one pass.
                frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
                cursor.register("_mogulflow_rows", frame)
                try:
                    select = f"SELECT {column_list} FROM _mogulflow_rows"
                    cursor.execute(f"INSERT INTO {table} ({column_list}) {select} {suffix}")
                finally:
                    cursor.unregister("_mogulflow_rows")
            else:
                placeholders = ", ".join(["%s"] * len(columns))
                cursor.executemany(
                    f"INSERT INTO {table} ({column_list}) VALUES ({placeholders}) {suffix}", list(rows)
                )
        finally:
            cursor.close()
        self.connection.commit()

    def close(self) -> None:
        """Close the underlying connection."""
        self.connection.close()
