"""Every statement mogulflow sends, in each warehouse's dialect, read back by sqlglot for that dialect.

DuckDB and PostgreSQL also run end to end (test_postgres_warehouse, test_sync_engine, ...); Snowflake,
BigQuery and Redshift cannot run here, so the real `Warehouse` code writes to a DB-API connection that
records what it is sent (a stand-in for the driver, not for our code), and each recorded statement,
with its values put in as the driver would, must parse in the warehouse's own dialect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from mogulflow.extract.source_rows import TEMPLATES, window_params
from mogulflow.values.entities import Entity, Window
from mogulflow.values.rejected_rows import RejectedRow
from mogulflow.values.run_summary import EntityCounts, RunOutcome, RunSummary
from mogulflow.warehouse.connection import Warehouse, bind
from mogulflow.warehouse.dialects import (
    BIGQUERY,
    DIALECTS,
    REDSHIFT,
    SNOWFLAKE,
    ColumnKind,
    Dialect,
    declared_tables,
    render_create_table,
    split_statements,
)
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.run_records import record_rejects, record_run
from mogulflow.warehouse.sql_files import read_sql, sql_dir
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus, save_state

ALL_DIALECTS = sorted(DIALECTS)
# DuckDB writes through its own frame API and runs in every end-to-end test: the others are recorded.
RECORDED_DIALECTS = [name for name in ALL_DIALECTS if name != "duckdb"]
OWN_TABLES = declared_tables(read_sql("mogulflow_tables.sql"))
SOURCE_TABLES = declared_tables(read_sql("schema.sql"))
WINDOWS = {
    "incremental": Window(datetime(2025, 1, 4, tzinfo=UTC), datetime(2025, 1, 5, tzinfo=UTC), False),
    "full_refresh": Window(None, None, True),
}


class RecordingCursor:
    """A DB-API cursor that keeps every statement and answers every query with no rows."""

    def __init__(self, sent: list[tuple[str, Any]]) -> None:
        self.sent = sent
        self.description: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.sent.append((sql, params))
        self.description = [("count", None)]

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> None:
        for params in seq_of_params:
            self.sent.append((sql, params))

    def fetchmany(self, size: int) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class RecordingConnection:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.sent)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def literal(value: Any, dialect: Dialect) -> str:
    """A value as the driver's client-side binding writes it into the text."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat(sep=' ')}'"
    if dialect is BIGQUERY:  # Airflow's BigQuery cursor escapes with backslashes
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + str(value).replace("'", "''") + "'"


def as_sent(sql: str, params: Any, dialect: Dialect) -> str:
    """The statement with its values in place of the paramstyle's placeholders (each checked used)."""
    if params is None:
        assert not re.search(r"%\(\w+\)s|%s|\?", sql), f"placeholders without values: {sql}"
        return sql
    if isinstance(params, Mapping):
        names = re.findall(r"%\((\w+)\)s", sql)
        assert set(names) == set(params), f"placeholders {sorted(set(names))} vs values {sorted(params)}"
        text = re.sub(r"%\((\w+)\)s", lambda m: literal(params[m.group(1)], dialect), sql)
    else:  # positional: `?`, or `%s` (which pyformat drivers take too, with a sequence)
        placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        pieces = sql.split(placeholder)
        assert len(pieces) - 1 == len(params), f"{len(pieces) - 1} placeholders, {len(params)} values"
        text = pieces[0] + "".join(
            literal(v, dialect) + piece for v, piece in zip(params, pieces[1:], strict=True)
        )
    return text.replace("%%", "%") if dialect.paramstyle != "qmark" else text


def parse(sql: str, dialect: Dialect) -> exp.Expression:
    """sqlglot's reading of one statement in the dialect; fails the test on any parse error or
    function the dialect does not have."""
    statements = sqlglot.parse(sql, read=dialect.sqlglot_name, error_level=sqlglot.ErrorLevel.RAISE)
    assert len(statements) == 1, sql
    assert statements[0] is not None
    # every function is one sqlglot knows in this dialect (an unknown one reads as Anonymous)
    assert [f.sql() for f in statements[0].find_all(exp.Anonymous)] == [], sql
    return statements[0]


def own_type(kind: ColumnKind, dialect: Dialect) -> str:
    """How sqlglot writes the dialect's declared type for a kind (to compare parsed types with)."""
    return exp.DataType.build(dialect.column_types[kind], dialect=dialect.sqlglot_name).sql(
        dialect.sqlglot_name
    )


def sent_by(dialect: Dialect, act) -> list[str]:
    """Run `act(warehouse)` on a recording connection; every statement as the driver would send it."""
    connection = RecordingConnection()
    act(Warehouse(connection, dialect, schema="mogulflow_dataset"))
    return [as_sent(sql, params, dialect) for sql, params in connection.sent]


# --- mogulflow's own tables: every CREATE TABLE of the one neutral file, in every dialect ---------


def test_the_neutral_file_declares_the_contracts_tables():
    assert {"mogulflow_rejects", "mogulflow_runs", "mogulflow_sync_state"} <= set(OWN_TABLES)


@pytest.mark.parametrize("dialect_name", ALL_DIALECTS)
@pytest.mark.parametrize("table_name", sorted(OWN_TABLES) + sorted(SOURCE_TABLES))
def test_each_create_table_renders_in_the_dialects_own_types(table_name, dialect_name):
    dialect = DIALECTS[dialect_name]
    declared = OWN_TABLES.get(table_name) or SOURCE_TABLES[table_name]
    neutral = "mogulflow_tables.sql" if table_name in OWN_TABLES else "schema.sql"
    [statement] = [s for s in split_statements(read_sql(neutral)) if re.search(rf"\b{table_name}\s*\(", s)]

    rendered = render_create_table(statement, dialect)
    parsed = parse(rendered, dialect)

    assert isinstance(parsed, exp.Create) and parsed.kind == "TABLE"
    columns = {c.name: c for c in parsed.find_all(exp.ColumnDef)}
    assert list(columns) == [c.name for c in declared.columns]
    for column in declared.columns:
        assert f"{column.name} {dialect.column_types[column.kind]}" in rendered
        assert columns[column.name].args["kind"].sql(dialect.sqlglot_name) == own_type(column.kind, dialect)
        constraints = columns[column.name].sql(dialect.sqlglot_name)
        assert ("NOT NULL" in constraints) == column.not_null
    if declared.primary_key:
        key = parsed.find(exp.PrimaryKey)
        assert [i.name for i in key.expressions] == list(declared.primary_key)
        assert ("NOT ENFORCED" in rendered) == (dialect is BIGQUERY)


@pytest.mark.parametrize(
    ("dialect", "absent"),
    [
        (BIGQUERY, ("TEXT", "BOOLEAN", "BIGINT", "BLOB")),
        (SNOWFLAKE, ("TEXT", "BLOB", " TIMESTAMP ")),
        (REDSHIFT, ("TEXT", "BLOB")),
    ],
)
def test_neutral_type_names_do_not_reach_warehouses_that_mean_something_else(dialect, absent):
    ddl = "\n".join(sent_by(dialect, ensure_tables))
    for word in absent:
        assert not re.search(rf"\s{word.strip()}[\s,]", ddl), f"{word} in {dialect.name} DDL"


def test_a_binary_column_becomes_each_dialects_bytes_type():
    statement = "CREATE TABLE IF NOT EXISTS t (run_id TEXT NOT NULL, part BLOB, PRIMARY KEY (run_id))"
    types = {
        name: render_create_table(statement, d).split("part ")[1].split("\n")[0]
        for name, d in DIALECTS.items()
    }
    assert types == {
        "duckdb": "BLOB,",
        "postgres": "BYTEA,",
        "snowflake": "BINARY,",
        "bigquery": "BYTES,",
        "redshift": "VARBYTE(1024000),",
    }


def test_a_type_without_a_rendering_names_the_column():
    with pytest.raises(ValueError, match=r"column payload: type JSONB has no rendering"):
        render_create_table("CREATE TABLE t (payload JSONB)", SNOWFLAKE)


@pytest.mark.parametrize("dialect_name", ALL_DIALECTS)
def test_every_neutral_type_has_a_rendering_in_every_dialect(dialect_name):
    dialect = DIALECTS[dialect_name]
    assert set(dialect.column_types) == set(ColumnKind)
    columns = ", ".join(f"c_{kind.name.lower()} {kind.value}" for kind in ColumnKind)
    parse(render_create_table(f"CREATE TABLE t ({columns})", dialect), dialect)


# --- statements mogulflow sends -----------------------------------------------------------------


@pytest.mark.parametrize("dialect_name", ALL_DIALECTS)
@pytest.mark.parametrize("window_name", sorted(WINDOWS))
@pytest.mark.parametrize("entity", list(TEMPLATES), ids=str)
def test_extract_templates_with_bound_values_parse(entity, window_name, dialect_name):
    dialect = DIALECTS[dialect_name]
    params = window_params(WINDOWS[window_name], "ds_123")
    bound = bind(read_sql(TEMPLATES[entity], dialect_name), params, dialect)
    parsed = parse(as_sent(bound.sql, bound.params, dialect), dialect)

    assert isinstance(parsed, exp.Select)
    assert entity.table in {t.name for t in parsed.find_all(exp.Table)}


def test_bigquery_receives_datetimes_as_text_it_reads_as_timestamps():
    params = window_params(WINDOWS["incremental"], "ds")
    bound = bind(read_sql(TEMPLATES[Entity.LEAD]), params, BIGQUERY)
    assert bound.params["window_start"] == "2025-01-04 00:00:00"
    assert bound.params["full_refresh"] is False


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_ensure_tables_sends_one_parsable_create_per_declared_table(dialect_name):
    dialect = DIALECTS[dialect_name]
    sent = sent_by(dialect, ensure_tables)
    created = [parsed for parsed in (parse(s, dialect) for s in sent) if isinstance(parsed, exp.Create)]
    assert [c.this.this.name for c in created] == list(OWN_TABLES)


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_ensure_tables_adds_the_columns_an_older_table_lacks_in_the_dialects_types(dialect_name):
    # The recording connection shows no column at all: every column that can be added is added.
    dialect = DIALECTS[dialect_name]
    added = [s for s in sent_by(dialect, ensure_tables) if s.startswith("ALTER TABLE")]
    for statement in added:
        parse(statement, dialect)
    assert "ALTER TABLE mogulflow_runs ADD COLUMN leads_deleted " in "\n".join(added)
    assert not any(" run_id " in s for s in added)  # NOT NULL without a default: never added this way


def _state_entries() -> list[StateEntry]:
    synced = datetime(2025, 1, 5, 3, 0, tzinfo=UTC)
    return [
        StateEntry(
            entity=Entity.LEAD,
            data_source_uuid="ds_123",
            external_id=f"L{n}",
            chartmogul_uuid=f"cus_{n}" if n % 2 else None,
            content_hash="abc" if n % 2 else None,
            payload={"name": "O'Brien & Co 100%"} if n % 2 else None,
            status=SyncStatus.SYNCED if n % 2 else SyncStatus.FAILED,
            synced_at=synced,
            run_id="scheduled__2025-01-05",
            source_updated_at=datetime(2025, 1, 4, 12, 0) if n % 2 else None,
        )
        for n in range(3)
    ]


def _run_summary() -> RunSummary:
    return RunSummary(
        run_id="scheduled__2025-01-05",
        dag_id="chartmogul_leads_trials",
        window=WINDOWS["incremental"],
        dry_run=False,
        started_at=datetime(2025, 1, 5, 3, 0, tzinfo=UTC),
        finished_at=datetime(2025, 1, 5, 3, 5, tzinfo=UTC),
        outcome=RunOutcome.SUCCESS,
        counts={Entity.LEAD: EntityCounts(extracted=3, created=2)},
    )


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_sync_state_upsert_parses_and_replaces_rows_by_key(dialect_name):
    dialect = DIALECTS[dialect_name]
    sent = sent_by(dialect, lambda w: save_state(w, _state_entries()))
    statements = [parse(s, dialect) for s in sent]

    kinds = [type(s).__name__ for s in statements]
    expected = {
        "on_conflict": ["Insert"],
        "merge": ["Merge"],
        "merge_from_temp_table": ["Create", "Insert", "Merge", "Drop"],
    }[dialect.upsert_style]
    assert kinds[: len(expected)] == expected and len(set(kinds)) == len(set(expected))
    if dialect.upsert_style == "on_conflict":
        assert "ON CONFLICT (entity, data_source_uuid, external_id) DO UPDATE" in sent[0]
    else:
        merge = next(s for s in statements if isinstance(s, exp.Merge))
        on = merge.args["on"].sql(dialect.sqlglot_name)
        for column in ("entity", "data_source_uuid", "external_id"):
            assert f".{column} = source.{column}" in on
    # every row is sent exactly once, whatever the batching
    assert sum(text.count("'L1'") for text in sent) == 1


@pytest.mark.parametrize("dialect_name", ["snowflake", "bigquery"])
def test_merged_values_are_cast_to_their_columns_types(dialect_name):
    dialect = DIALECTS[dialect_name]
    [merge] = sent_by(dialect, lambda w: save_state(w, _state_entries()))
    assert f"CAST(NULL AS {dialect.column_types[ColumnKind.TEXT]}) AS chartmogul_uuid" in merge
    assert f"AS {dialect.column_types[ColumnKind.TIMESTAMP]}) AS synced_at" in merge


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_run_record_parses_in_every_dialect(dialect_name):
    dialect = DIALECTS[dialect_name]
    sent = sent_by(
        dialect, lambda w: record_run(w, _run_summary(), details={"a": 1}, data_source=("Leads", "ds"))
    )
    for statement in sent:
        parse(statement, dialect)
    assert any("leads_created" in s for s in sent)


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_rejects_are_replaced_then_inserted_in_parsable_statements(dialect_name):
    dialect = DIALECTS[dialect_name]
    rejects = [
        RejectedRow(entity=Entity.LEAD, source_id=None, reason="lead_id: is missing"),
        RejectedRow(entity=Entity.TRIAL, source_id="T'1", reason="currency: 'XXX' is not ISO 4217"),
    ]
    at = datetime(2025, 1, 5, 3, 0, tzinfo=UTC)
    sent = sent_by(dialect, lambda w: record_rejects(w, run_id="r", dag_id="d", rejects=rejects, at=at))
    kinds = [type(parse(s, dialect)).__name__ for s in sent]
    assert kinds[:2] == ["Delete", "Delete"] and set(kinds[2:]) == {"Insert"}


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_table_exists_asks_the_dialects_catalog(dialect_name):
    dialect = DIALECTS[dialect_name]
    [sent] = sent_by(dialect, lambda w: w.table_exists("mogulflow_runs"))
    parsed = parse(sent, dialect)
    [catalog] = [t.sql(dialect.sqlglot_name).lower().replace("`", "") for t in parsed.find_all(exp.Table)]
    assert catalog.startswith(
        "mogulflow_dataset.information_schema" if dialect is BIGQUERY else "information_schema"
    )
    assert catalog.split(" ")[0].endswith("tables")


def test_every_per_dialect_override_file_is_for_a_known_dialect_and_a_shared_file():
    for folder in (p for p in sql_dir().iterdir() if p.is_dir()):
        assert folder.name in DIALECTS, f"{folder} is not a dialect mogulflow knows"
        for override in folder.glob("*.sql"):
            assert (sql_dir() / override.name).is_file(), f"{override} overrides no shared file"


# --- binding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect_name", "sql", "params"),
    [
        ("duckdb", "SELECT ? , ? WHERE x LIKE 'a:b%'", [1, 1]),
        ("postgres", "SELECT %(a)s , %(a)s WHERE x LIKE 'a:b%%'", {"a": 1}),
        ("snowflake", "SELECT %(a)s , %(a)s WHERE x LIKE 'a:b%%'", {"a": 1}),
        ("bigquery", "SELECT %(a)s , %(a)s WHERE x LIKE 'a:b%%'", {"a": 1}),
        ("redshift", "SELECT %s , %s WHERE x LIKE 'a:b%%'", [1, 1]),
    ],
)
def test_bind_speaks_each_drivers_paramstyle(dialect_name, sql, params):
    bound = bind("SELECT :a , :a WHERE x LIKE 'a:b%'", {"a": 1}, dialect_name)
    assert (bound.sql, bound.params) == (sql, params)


def test_sql_without_placeholders_is_sent_as_written():
    bound = bind("SELECT '100%' -- :not_a_param", {}, "postgres")
    assert (bound.sql, bound.params) == ("SELECT '100%' -- :not_a_param", None)


def test_a_missing_value_names_the_placeholder():
    with pytest.raises(KeyError, match=":window_end"):
        bind("SELECT :window_end", {"window_start": 1}, "redshift")


@pytest.mark.parametrize("dialect_name", RECORDED_DIALECTS)
def test_column_names_ask_the_dialects_catalog(dialect_name):
    dialect = DIALECTS[dialect_name]
    [sent] = sent_by(dialect, lambda w: w.column_names("leads"))
    parsed = parse(sent, dialect)
    [catalog] = [t.sql(dialect.sqlglot_name).lower().replace("`", "") for t in parsed.find_all(exp.Table)]
    assert "information_schema.columns" in catalog
    assert "'leads'" in sent.lower()
