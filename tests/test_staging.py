"""Staging: what one task hands the next goes through a store every worker reaches, part by part."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mogulflow.values.constants import STAGING_TABLE
from mogulflow.values.entities import Entity
from mogulflow.values.rejected_rows import RejectedRow
from mogulflow.warehouse import staging
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.parquet_parts import iter_frames, read_frame
from mogulflow.warehouse.part_stores import MAX_PART_BYTES, STAGING_DIR_ENV, STAGING_URL_ENV
from mogulflow.warehouse.staged_rejects import read_rejects

DAG_ID = "chartmogul_leads_trials"
RUN_ID = "manual__2026-11-29T23:00:00+00:00"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    monkeypatch.delenv(STAGING_URL_ENV, raising=False)
    monkeypatch.delenv(STAGING_DIR_ENV, raising=False)
    # In memory: a DuckDB *file* stages beside itself (see the test below); a server warehouse in its table.
    opened = Warehouse(duckdb.connect(), "duckdb")
    ensure_tables(opened)
    yield opened
    opened.close()


def _tokens(ids: np.ndarray) -> np.ndarray:
    # a multiplicative hash of the id: the same id always gets the same token
    with np.errstate(over="ignore"):
        return ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)


def leads(count: int, start: int = 0) -> pd.DataFrame:
    ids = np.arange(start, start + count)
    return pd.DataFrame(
        {
            "lead_id": [f"lead-{i:07d}" for i in ids],
            # random mailbox names: Parquet cannot compress them away
            "email": [
                f"{token:016x}@example-{i % 97}.com" for i, token in zip(ids, _tokens(ids), strict=True)
            ],
            "country": np.array(["US", "DE", "FR"])[ids % 3],
            "updated_at": pd.to_datetime(ids, unit="s", utc=True),
        }
    )


def stage(run: staging.RunStaging, *chunks: pd.DataFrame) -> str:
    parts = run.valid_parts(Entity.LEAD)
    for chunk in chunks:
        parts.append(chunk)
    return parts.finish()


def staged_parts(warehouse: Warehouse) -> int:
    return int(warehouse.scalar(f"SELECT count(*) FROM {STAGING_TABLE}"))


def test_by_default_rows_are_staged_in_the_warehouse_table_and_read_back_in_order(
    warehouse: Warehouse,
) -> None:
    run = staging.for_run(warehouse, DAG_ID, RUN_ID)
    location = stage(run, leads(1000), leads(500, start=1000))

    assert location.startswith(f"{STAGING_TABLE}:")
    assert staged_parts(warehouse) >= 2
    read = read_frame(warehouse, location)
    pd.testing.assert_frame_equal(read, leads(1500), check_dtype=False)


def test_a_big_chunk_is_split_into_parts_every_warehouse_binary_type_holds(warehouse: Warehouse) -> None:
    run = staging.for_run(warehouse, DAG_ID, RUN_ID)
    location = stage(run, leads(200_000))

    sizes = warehouse.query_frame(f"SELECT octet_length(data) AS size FROM {STAGING_TABLE}")["size"]
    assert len(sizes) > 1
    assert sizes.max() <= MAX_PART_BYTES
    frames = list(iter_frames(warehouse, location, columns=["lead_id"]))
    assert len(frames) == len(sizes)  # one part in memory at a time
    assert pd.concat(frames)["lead_id"].tolist() == leads(200_000)["lead_id"].tolist()


def test_dropping_rows_of_a_split_chunk_removes_exactly_those_rows(warehouse: Warehouse) -> None:
    run = staging.for_run(warehouse, DAG_ID, RUN_ID)
    parts = run.valid_parts(Entity.LEAD)
    parts.append(leads(10))
    parts.append(leads(200_000, start=10))
    parts.drop(1, np.array([0, 150_000, 199_999]))

    kept = read_frame(warehouse, parts.finish(), columns=["lead_id"])["lead_id"]
    assert len(kept) == 200_010 - 3
    assert not {"lead-0000010", "lead-0150010", "lead-0200009"} & set(kept)


def test_staging_again_replaces_what_an_earlier_attempt_left(warehouse: Warehouse) -> None:
    run = staging.for_run(warehouse, DAG_ID, RUN_ID)
    stage(run, leads(100), leads(100, start=100), leads(100, start=200))
    location = stage(run, leads(5))

    assert read_frame(warehouse, location)["lead_id"].tolist() == leads(5)["lead_id"].tolist()


def test_rejects_are_staged_and_read_back(warehouse: Warehouse) -> None:
    run = staging.for_run(warehouse, DAG_ID, RUN_ID)
    rejected = [
        RejectedRow(Entity.LEAD, "lead-1", "email: not an address"),
        RejectedRow(Entity.LEAD, None, "no id"),
    ]
    report = run.stage_rejects(Entity.LEAD, rejected, 12, 10, stage(run, leads(10)))

    assert (report.extracted, report.valid, report.rejected) == (12, 10, 2)
    assert [r.row for r in read_rejects(warehouse, report)] == rejected


def test_removing_a_run_deletes_only_its_parts(warehouse: Warehouse) -> None:
    stage(staging.for_run(warehouse, DAG_ID, RUN_ID), leads(10))
    other = stage(staging.for_run(warehouse, DAG_ID, "scheduled__2026-11-28T00:00:00+00:00"), leads(7))

    staging.remove_run(warehouse, DAG_ID, RUN_ID)

    assert len(read_frame(warehouse, other)) == 7
    with pytest.raises(FileNotFoundError, match="nothing is staged"):
        read_frame(warehouse, staging.for_run(warehouse, DAG_ID, RUN_ID).location(Entity.LEAD, "valid"))


def test_a_staging_url_stages_files_there_instead(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STAGING_URL_ENV, (tmp_path / "shared").as_uri())
    run = staging.for_run(warehouse, DAG_ID, RUN_ID)
    location = stage(run, leads(300), leads(300, start=300))

    assert location.startswith((tmp_path / "shared").as_uri())
    assert staged_parts(warehouse) == 0
    assert sorted(p.name for p in (tmp_path / "shared").rglob("*.parquet")) == [
        "part-000000.parquet",
        "part-000001.parquet",
    ]
    assert read_frame(warehouse, location)["lead_id"].tolist() == leads(600)["lead_id"].tolist()
    staging.remove_run(warehouse, DAG_ID, RUN_ID)
    assert not list((tmp_path / "shared").rglob("*.parquet"))


def test_a_duckdb_file_warehouse_stages_in_a_folder_beside_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STAGING_URL_ENV, raising=False)
    monkeypatch.delenv(STAGING_DIR_ENV, raising=False)
    warehouse = Warehouse.open_duckdb(str(tmp_path / "warehouse.duckdb"))
    try:
        ensure_tables(warehouse)
        location = stage(staging.for_run(warehouse, DAG_ID, RUN_ID), leads(10))

        assert location.startswith((tmp_path / "warehouse.duckdb.staging").as_uri())
        assert staged_parts(warehouse) == 0
        assert len(read_frame(warehouse, location)) == 10
        staging.remove_run(warehouse, DAG_ID, RUN_ID)
        assert not list((tmp_path / "warehouse.duckdb.staging").rglob("*.parquet"))
    finally:
        warehouse.close()


def test_parts_stay_readable_where_they_were_put_when_the_setting_changes(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = stage(staging.for_run(warehouse, DAG_ID, RUN_ID), leads(3))
    monkeypatch.setenv(STAGING_URL_ENV, "memory://mogulflow-staging")

    assert len(read_frame(warehouse, location)) == 3


def test_the_warehouse_store_works_on_postgres(
    postgres_database: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2

    monkeypatch.delenv(STAGING_URL_ENV, raising=False)
    monkeypatch.delenv(STAGING_DIR_ENV, raising=False)
    warehouse = Warehouse(psycopg2.connect(**postgres_database), "postgres")
    try:
        ensure_tables(warehouse)
        run = staging.for_run(warehouse, DAG_ID, RUN_ID)
        parts = run.valid_parts(Entity.LEAD)
        parts.append(leads(50_000))
        parts.drop(0, np.array([1, 2]))
        read = read_frame(warehouse, parts.finish())
        assert len(read) == 49_998
        assert str(read["updated_at"].dt.tz) == "UTC"
        staging.remove_run(warehouse, DAG_ID, RUN_ID)
        assert staged_parts(warehouse) == 0
    finally:
        warehouse.close()
