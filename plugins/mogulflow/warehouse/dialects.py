"""Dialects: what mogulflow needs to know about each SQL warehouse it runs on.

One `Dialect` per warehouse: the Airflow connection types that name it, the provider to install, the
DB-API driver's parameter style, how rows are inserted and upserted, and the warehouse's own name for
each column type. mogulflow's tables are declared once, in `mogulflow/sql/mogulflow_tables.sql`, with
neutral types (TEXT, TIMESTAMP, BOOLEAN, BIGINT, INTEGER, DOUBLE, DATE, BLOB); `render_create_table`
turns each CREATE TABLE of that file (whoever added it) into the dialect's own DDL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sqlglot import exp

# How the DB-API driver wants values bound (PEP 249 `paramstyle`), as each provider's hook returns it:
#   qmark     `?` with a sequence            duckdb
#   format    `%s` with a sequence           redshift_connector
#   pyformat  `%(name)s` with a mapping      psycopg, snowflake-connector-python, Airflow's BigQuery cursor
ParamStyle = Literal["qmark", "format", "pyformat"]
# How many rows reach the warehouse at once:
#   dataframe    DuckDB scans a registered pandas frame (fastest by far)
#   executemany  the driver batches the rows itself (psycopg pipelines them, Snowflake's connector
#                rewrites them into one multi-row INSERT)
#   multi_row    one INSERT ... VALUES (...), (...) per batch: drivers that would send one statement per
#                row (redshift_connector, and BigQuery where each statement is a job)
InsertStyle = Literal["dataframe", "executemany", "multi_row"]
# How a row replaces the one with the same key:
#   on_conflict             INSERT ... ON CONFLICT (key) DO UPDATE (DuckDB, PostgreSQL)
#   merge                   MERGE INTO t USING (SELECT ... UNION ALL SELECT ...) (Snowflake, BigQuery)
#   merge_from_temp_table   MERGE from a temporary table: Redshift's MERGE takes no subquery as source
UpsertStyle = Literal["on_conflict", "merge", "merge_from_temp_table"]

# The SQL mogulflow ships is written in this dialect (DuckDB and PostgreSQL read it as it is).
NEUTRAL_DIALECT = "postgres"


class ColumnKind(StrEnum):
    """The neutral column types mogulflow's own tables are declared with."""

    TEXT = "TEXT"
    TIMESTAMP = "TIMESTAMP"  # naive, holding UTC
    BOOLEAN = "BOOLEAN"
    BIGINT = "BIGINT"
    INTEGER = "INTEGER"
    DOUBLE = "DOUBLE"
    DATE = "DATE"
    BINARY = "BLOB"  # bytes (e.g. Parquet parts); BYTEA and VARBINARY read the same


@cache
def _kind_of_parsed_type() -> dict[exp.DataType.Type, ColumnKind]:
    """sqlglot's reading of a declared type → its neutral kind (aliases: VARCHAR is TEXT, ...).

    sqlglot is imported only here and below: it takes a second to import, and only the tasks that
    create tables or merge rows need it."""
    from sqlglot import exp

    parsed = exp.DataType.Type
    return {
        parsed.TEXT: ColumnKind.TEXT,
        parsed.VARCHAR: ColumnKind.TEXT,
        parsed.TIMESTAMP: ColumnKind.TIMESTAMP,
        parsed.TIMESTAMPNTZ: ColumnKind.TIMESTAMP,
        parsed.BOOLEAN: ColumnKind.BOOLEAN,
        parsed.BIGINT: ColumnKind.BIGINT,
        parsed.INT: ColumnKind.INTEGER,
        parsed.SMALLINT: ColumnKind.INTEGER,
        parsed.DOUBLE: ColumnKind.DOUBLE,
        parsed.FLOAT: ColumnKind.DOUBLE,
        parsed.DATE: ColumnKind.DATE,
        parsed.VARBINARY: ColumnKind.BINARY,
        parsed.BINARY: ColumnKind.BINARY,
        parsed.BLOB: ColumnKind.BINARY,
    }


@dataclass(frozen=True)
class Dialect:
    """One warehouse as mogulflow speaks to it (see the module docstring for each style)."""

    name: str
    conn_types: tuple[str, ...]  # Airflow connection types that mean this warehouse
    provider: str  # what to pip install for its hook
    paramstyle: ParamStyle
    insert_style: InsertStyle
    upsert_style: UpsertStyle
    column_types: Mapping[ColumnKind, str]  # the warehouse's own type for each neutral kind
    # counts the named table in the connection's current schema; `{schema}` = Warehouse.schema
    table_exists_sql: str
    # the named table's column names (same scope)
    columns_sql: str
    primary_key_suffix: str = ""  # BigQuery accepts primary keys only as NOT ENFORCED
    # rows per statement for multi_row inserts and merges (also capped by MAX_PARAMS_PER_STATEMENT)
    rows_per_statement: int = 500
    # Snowflake keeps unquoted names upper-case and returns them so: mogulflow reads them lower-case
    lower_case_result_names: bool = False
    # Airflow's BigQuery cursor formats values into the text (strings quoted, the rest with str()):
    # datetimes go as ISO strings, and inserted values are CAST to the column's type
    formats_values_into_text: bool = False
    # MERGE sources built from bound values carry no types of their own: cast each to its column's
    cast_merged_values: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def sqlglot_name(self) -> str:
        """The name sqlglot knows this dialect by."""
        return self.name


# PostgreSQL-family and DuckDB catalogs: information_schema, scoped to the current schema.
_CURRENT_SCHEMA_TABLES = (
    "SELECT count(*) FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name = :table"
)
_CURRENT_SCHEMA_COLUMNS = (
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = :table"
)

# The neutral types of mogulflow_tables.sql as DuckDB spells them; other dialects state where they differ.
_STANDARD_TYPES: Mapping[ColumnKind, str] = {
    ColumnKind.TEXT: "TEXT",
    ColumnKind.TIMESTAMP: "TIMESTAMP",
    ColumnKind.BOOLEAN: "BOOLEAN",
    ColumnKind.BIGINT: "BIGINT",
    ColumnKind.INTEGER: "INTEGER",
    ColumnKind.DOUBLE: "DOUBLE",
    ColumnKind.DATE: "DATE",
    ColumnKind.BINARY: "BLOB",
}

DUCKDB = Dialect(
    name="duckdb",
    conn_types=("duckdb",),
    provider="apache-airflow-providers-duckdb",
    paramstyle="qmark",
    insert_style="dataframe",
    upsert_style="on_conflict",
    column_types=_STANDARD_TYPES,
    table_exists_sql=_CURRENT_SCHEMA_TABLES,
    columns_sql=_CURRENT_SCHEMA_COLUMNS,
)
POSTGRES = Dialect(
    name="postgres",
    conn_types=("postgres", "postgresql"),
    provider="apache-airflow-providers-postgres",
    paramstyle="pyformat",
    insert_style="executemany",
    upsert_style="on_conflict",
    column_types={**_STANDARD_TYPES, ColumnKind.DOUBLE: "DOUBLE PRECISION", ColumnKind.BINARY: "BYTEA"},
    table_exists_sql=_CURRENT_SCHEMA_TABLES,
    columns_sql=_CURRENT_SCHEMA_COLUMNS,
)
SNOWFLAKE = Dialect(
    name="snowflake",
    conn_types=("snowflake",),
    provider="apache-airflow-providers-snowflake",
    paramstyle="pyformat",  # the connector's default: client-side binding
    insert_style="executemany",
    upsert_style="merge",
    column_types={
        ColumnKind.TEXT: "VARCHAR",
        ColumnKind.TIMESTAMP: "TIMESTAMP_NTZ",
        ColumnKind.BOOLEAN: "BOOLEAN",
        ColumnKind.BIGINT: "NUMBER(38, 0)",
        ColumnKind.INTEGER: "NUMBER(38, 0)",
        ColumnKind.DOUBLE: "FLOAT",
        ColumnKind.DATE: "DATE",
        ColumnKind.BINARY: "BINARY",
    },
    table_exists_sql=(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = CURRENT_SCHEMA() AND table_name = UPPER(:table)"
    ),
    columns_sql=(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = CURRENT_SCHEMA() AND table_name = UPPER(:table)"
    ),
    lower_case_result_names=True,
    cast_merged_values=True,
)
BIGQUERY = Dialect(
    name="bigquery",
    conn_types=("google_cloud_platform", "gcpbigquery"),
    provider="apache-airflow-providers-google",
    paramstyle="pyformat",  # Airflow's BigQueryCursor: `operation % {name: literal}`
    insert_style="multi_row",
    upsert_style="merge",
    column_types={
        ColumnKind.TEXT: "STRING",
        ColumnKind.TIMESTAMP: "TIMESTAMP",
        ColumnKind.BOOLEAN: "BOOL",
        ColumnKind.BIGINT: "INT64",
        ColumnKind.INTEGER: "INT64",
        ColumnKind.DOUBLE: "FLOAT64",
        ColumnKind.DATE: "DATE",
        ColumnKind.BINARY: "BYTES",
    },
    # INFORMATION_SCHEMA must be qualified with the dataset
    table_exists_sql="SELECT count(*) FROM `{schema}`.INFORMATION_SCHEMA.TABLES WHERE table_name = :table",
    columns_sql="SELECT column_name FROM `{schema}`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = :table",
    primary_key_suffix=" NOT ENFORCED",
    rows_per_statement=200,  # each statement is a job: few, but within the 1 MB query-text limit
    formats_values_into_text=True,
    cast_merged_values=True,
)
REDSHIFT = Dialect(
    name="redshift",
    conn_types=("redshift",),
    provider="apache-airflow-providers-amazon",
    paramstyle="format",  # redshift_connector's default
    insert_style="multi_row",
    upsert_style="merge_from_temp_table",
    column_types={
        **_STANDARD_TYPES,
        ColumnKind.TEXT: "VARCHAR(65535)",  # Redshift's TEXT is VARCHAR(256): too short for reasons
        ColumnKind.DOUBLE: "DOUBLE PRECISION",
        ColumnKind.BINARY: "VARBYTE(1024000)",  # Redshift's largest
    },
    table_exists_sql=_CURRENT_SCHEMA_TABLES,
    columns_sql=_CURRENT_SCHEMA_COLUMNS,
)

DIALECTS: Mapping[str, Dialect] = {d.name: d for d in (DUCKDB, POSTGRES, SNOWFLAKE, BIGQUERY, REDSHIFT)}
# Redshift caps bound parameters per statement at 32767; stay well below on every warehouse.
MAX_PARAMS_PER_STATEMENT = 30_000


def dialect_named(name: str | Dialect) -> Dialect:
    """The dialect called `name` (a Dialect is returned as it is)."""
    if isinstance(name, Dialect):
        return name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; mogulflow knows {', '.join(DIALECTS)}") from None


def dialect_for_conn_type(conn_type: str | None) -> Dialect | None:
    """The dialect an Airflow connection type names, or None when mogulflow does not support it."""
    wanted = (conn_type or "").lower()
    return next((d for d in DIALECTS.values() if wanted in d.conn_types), None)


def supported_conn_types() -> str:
    """The supported connection types, for error messages: 'duckdb', 'postgres', ..."""
    return ", ".join(f"'{t}'" for d in DIALECTS.values() for t in d.conn_types)


@dataclass(frozen=True)
class DeclaredColumn:
    """One column of a CREATE TABLE in neutral SQL."""

    name: str
    kind: ColumnKind
    not_null: bool
    default: str | None  # the default's SQL, e.g. "0"


@dataclass(frozen=True)
class DeclaredTable:
    """One CREATE TABLE in neutral SQL: its columns and primary key."""

    name: str
    columns: tuple[DeclaredColumn, ...]
    primary_key: tuple[str, ...]
    if_not_exists: bool

    def kinds(self) -> dict[str, ColumnKind]:
        """Column name → neutral kind."""
        return {column.name: column.kind for column in self.columns}


def declared_tables(sql: str) -> dict[str, DeclaredTable]:
    """Every CREATE TABLE of a neutral SQL script, by table name, in file order."""
    import sqlglot
    from sqlglot import exp

    tables = {}
    for statement in sqlglot.parse(sql, read=NEUTRAL_DIALECT):
        if isinstance(statement, exp.Create) and statement.kind == "TABLE":
            table = _declared_table(statement)
            tables[table.name] = table
    return tables


def is_create_table(statement: str) -> bool:
    """Whether one SQL statement is a CREATE TABLE (with its column list)."""
    return [word.upper() for word in statement.split(None, 2)[:2]] == ["CREATE", "TABLE"]


def render_create_table(statement: str, dialect: Dialect) -> str:
    """One neutral CREATE TABLE statement in `dialect`'s own types.

    Raises ValueError naming the column when its type or constraint has no rendering.
    """
    import sqlglot
    from sqlglot import exp

    parsed = sqlglot.parse_one(statement, read=NEUTRAL_DIALECT)
    if not (isinstance(parsed, exp.Create) and parsed.kind == "TABLE"):
        raise ValueError(f"not a CREATE TABLE statement: {statement[:60]!r}")
    table = _declared_table(parsed)
    lines = []
    for column in table.columns:
        line = f"{column.name} {dialect.column_types[column.kind]}"
        # DEFAULT before NOT NULL: the order Snowflake's, BigQuery's and Redshift's grammars want
        if column.default is not None:
            line += f" DEFAULT {column.default}"
        if column.not_null:
            line += " NOT NULL"
        lines.append(line)
    if table.primary_key:
        lines.append(f"PRIMARY KEY ({', '.join(table.primary_key)}){dialect.primary_key_suffix}")
    exists = " IF NOT EXISTS" if table.if_not_exists else ""
    body = ",\n    ".join(lines)
    return f"CREATE TABLE{exists} {table.name} (\n    {body}\n)"


def render_script(sql: str, dialect: Dialect) -> list[str]:
    """The statements of a neutral script for `dialect`: each CREATE TABLE in the dialect's own types,
    any other statement as written."""
    return [
        render_create_table(statement, dialect) if is_create_table(statement) else statement
        for statement in split_statements(sql)
    ]


def split_statements(sql: str) -> list[str]:
    """The `;`-separated statements of a script, without `--` comments (a `;` inside one must not
    split a statement)."""
    text = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [part.strip() for part in text.split(";") if part.strip()]


def _declared_table(create: exp.Create) -> DeclaredTable:
    from sqlglot import exp

    schema = create.this
    name = schema.this.name
    columns = []
    primary_key: tuple[str, ...] = ()
    for element in schema.expressions:
        if isinstance(element, exp.PrimaryKey):
            primary_key = tuple(identifier.name for identifier in element.expressions)
        elif isinstance(element, exp.ColumnDef):
            columns.append(_declared_column(name, element))
        else:
            raise ValueError(
                f"table {name}: {element.sql()!r} is not a column or primary key mogulflow renders"
            )
    return DeclaredTable(name, tuple(columns), primary_key, bool(create.args.get("exists")))


def _declared_column(table: str, column: exp.ColumnDef) -> DeclaredColumn:
    from sqlglot import exp

    kind = _kind_of_parsed_type().get(column.args["kind"].this)
    if kind is None:
        raise ValueError(
            f"table {table}, column {column.name}: type {column.args['kind'].sql()} has no rendering "
            f"per warehouse; use one of {', '.join(k.value for k in ColumnKind)}"
        )
    not_null = False
    default = None
    for constraint in column.args.get("constraints") or []:
        rule = constraint.args["kind"]
        if isinstance(rule, exp.NotNullColumnConstraint):
            not_null = not rule.args.get("allow_null")
        elif isinstance(rule, exp.DefaultColumnConstraint):
            default = rule.this.sql(dialect=NEUTRAL_DIALECT)
        else:
            raise ValueError(
                f"table {table}, column {column.name}: constraint {constraint.sql()} is not one mogulflow "
                "renders per warehouse (NOT NULL, NULL, DEFAULT, and a table-level PRIMARY KEY are)"
            )
    return DeclaredColumn(column.name, kind, not_null, default)
