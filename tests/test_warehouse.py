"""The warehouse layer on the two warehouses this machine runs (DuckDB, PostgreSQL), and what
`open_warehouse` says about connections it cannot open."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
from collections.abc import Iterator

import pandas as pd
import pytest

from mogulflow.airflow.resources import open_warehouse
from mogulflow.values.errors import SetupError
from mogulflow.warehouse.connection import Warehouse

# One neutral CREATE TABLE, as other engineers add them to mogulflow/sql/mogulflow_tables.sql.
PARTS_TABLE = """
CREATE TABLE IF NOT EXISTS mogulflow_test_parts (
    run_id     TEXT NOT NULL,
    part       INTEGER NOT NULL,
    content    BLOB,              -- Parquet bytes
    rows       BIGINT NOT NULL DEFAULT 0,
    valid      BOOLEAN NOT NULL,
    written_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, part)
);
"""
COLUMNS = ("run_id", "part", "content", "rows", "valid", "written_at")


@pytest.fixture
def duckdb_warehouse(tmp_path) -> Iterator[Warehouse]:
    warehouse = Warehouse.open_duckdb(str(tmp_path / "warehouse.duckdb"))
    yield warehouse
    warehouse.close()


@pytest.fixture
def postgres_warehouse(postgres_database) -> Iterator[Warehouse]:
    import psycopg

    warehouse = Warehouse(psycopg.connect(**postgres_database), "postgres")
    yield warehouse
    warehouse.close()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request) -> Warehouse:
    return request.getfixturevalue(f"{request.param}_warehouse")


def _is_null(value) -> bool:
    return not isinstance(value, bytes | bytearray | memoryview) and bool(pd.isna(value))


def _parts(warehouse: Warehouse) -> list[tuple]:
    frame = warehouse.query_frame(f"SELECT {', '.join(COLUMNS)} FROM mogulflow_test_parts ORDER BY part")
    return [
        (
            r.run_id,
            int(r.part),
            None if _is_null(r.content) else bytes(r.content),
            int(r.rows),
            bool(r.valid),
        )
        for r in frame.itertuples(index=False)
    ]


def test_a_neutral_table_with_bytes_is_created_and_round_trips(warehouse):
    from datetime import datetime

    warehouse.execute_script(PARTS_TABLE)
    warehouse.execute_script(PARTS_TABLE)  # IF NOT EXISTS: a second run changes nothing
    at = datetime(2025, 1, 5, 3, 0)
    warehouse.insert_rows("mogulflow_test_parts", COLUMNS, [("r1", 0, b"PAR1\x00\xff", 10, True, at)])

    assert _parts(warehouse) == [("r1", 0, b"PAR1\x00\xff", 10, True)]


def test_upsert_replaces_by_key_and_the_last_of_duplicate_rows_wins(warehouse):
    from datetime import datetime

    warehouse.execute_script(PARTS_TABLE)
    at = datetime(2025, 1, 5, 3, 0)
    warehouse.upsert_rows(
        "mogulflow_test_parts", COLUMNS, [("r1", 0, b"a", 1, True, at)], key=("run_id", "part")
    )
    warehouse.upsert_rows(
        "mogulflow_test_parts",
        COLUMNS,
        [("r1", 0, b"b", 2, False, at), ("r1", 1, None, 3, True, at), ("r1", 0, b"c", 4, True, at)],
        key=("run_id", "part"),
    )

    assert _parts(warehouse) == [("r1", 0, b"c", 4, True), ("r1", 1, None, 3, True)]


def test_table_exists_sees_only_tables_that_exist(warehouse):
    assert not warehouse.table_exists("mogulflow_test_parts")
    warehouse.execute_script(PARTS_TABLE)
    assert warehouse.table_exists("mogulflow_test_parts")


def test_percent_signs_in_sql_and_values_survive_every_paramstyle(warehouse):
    assert warehouse.scalar("SELECT '100%' || :suffix AS text", {"suffix": " 5%"}) == "100% 5%"
    assert warehouse.scalar("SELECT '100%' AS text") == "100%"


# --- open_warehouse -----------------------------------------------------------------------------


def _connection(monkeypatch, conn: dict) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps(conn))


def test_a_connection_of_an_unsupported_type_fails_at_once_naming_the_supported_ones(monkeypatch):
    _connection(monkeypatch, {"conn_type": "mysql", "host": "db"})
    with pytest.raises(SetupError) as raised:
        open_warehouse()
    message = str(raised.value)
    assert "'mysql'" in message
    for conn_type in ("duckdb", "postgres", "snowflake", "google_cloud_platform", "redshift"):
        assert f"'{conn_type}'" in message
    assert "docs/warehouses.md" in message


@pytest.mark.parametrize(
    ("conn_type", "provider"),
    [
        ("snowflake", "apache-airflow-providers-snowflake"),
        ("redshift", "apache-airflow-providers-amazon"),
        ("google_cloud_platform", "apache-airflow-providers-google"),
    ],
)
def test_a_supported_warehouse_without_its_provider_says_what_to_install(monkeypatch, conn_type, provider):
    # this machine runs DuckDB and PostgreSQL only; where the provider is installed there is nothing to say
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(provider)
        pytest.skip(f"{provider} is installed here")
    _connection(monkeypatch, {"conn_type": conn_type, "host": "example", "login": "u", "password": "p"})
    with pytest.raises(SetupError, match=f"pip install {provider}"):
        open_warehouse()


@pytest.mark.postgres
def test_a_postgres_connection_opens_through_its_hook(monkeypatch, postgres_database):
    _connection(
        monkeypatch,
        {
            "conn_type": "postgres",
            "host": postgres_database["host"],
            "port": postgres_database["port"],
            "login": postgres_database["user"],
            "schema": postgres_database["dbname"],
        },
    )
    warehouse = open_warehouse()
    try:
        assert warehouse.dialect.name == "postgres"
        assert warehouse.scalar("SELECT :answer + 1 AS answer", {"answer": 41}) == 42
    finally:
        warehouse.close()


def test_column_names_lists_a_tables_columns_or_nothing(warehouse):
    assert warehouse.column_names("mogulflow_test_parts") == set()
    warehouse.execute_script(PARTS_TABLE)
    assert warehouse.column_names("mogulflow_test_parts") == set(COLUMNS)
