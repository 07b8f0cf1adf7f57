"""Staging: hand validated rows from one task to the next as Parquet parts, never through a local folder.

The tasks of one run may run on different machines (a CeleryExecutor cluster), so the parts live
where every worker reaches them:

- by default with the warehouse: in its table `mogulflow_staging` (one row per Parquet part), or,
  for a DuckDB file (which only one machine opens anyway), in a folder beside the file;
- or under an object-store URL the deployment sets, `$MOGULFLOW_STAGING_URL` (`s3://bucket/prefix`,
  `gs://...`, any fsspec URL; a local `file:///...` folder only when set explicitly, e.g. a share
  every worker mounts). `$MOGULFLOW_STAGING_DIR`, the older setting, names such a local folder.

XCom carries a set of parts' location (a string naming its store); the frames stay in the store
and are written and read one part at a time. A part in the warehouse holds at most
`MAX_PART_BYTES`, which every warehouse's binary type takes; files in an object store may be larger
(`MAX_FILE_PART_BYTES`): fewer parts, less per-part work. A task that stages again (an Airflow
retry) first removes what its earlier attempt left; `remove_run` deletes a run's parts once its
account is recorded.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import numpy as np
import pandas as pd

from mogulflow.model import Entity, RejectedRow, waits_for_parent
from mogulflow.reports import StagedExtract
from mogulflow.warehouse import Warehouse

if TYPE_CHECKING:
    import fsspec

STAGING_URL_ENV = "MOGULFLOW_STAGING_URL"
STAGING_DIR_ENV = "MOGULFLOW_STAGING_DIR"
STAGING_TABLE = "mogulflow_staging"

# Redshift's VARBYTE, the smallest binary type of the warehouses mogulflow targets, holds 1,024,000
# bytes. Parts aim at half of it, so a part grown by a wider chunk than the last still fits.
MAX_PART_BYTES = 1_000_000
# A file part is read one DuckDB vector batch at a time, so its size bounds little memory; small
# parts cost time instead (1M-lead dry run, file parts of 1 MB: 32.6 s, 469 MiB; 64 MB: 22.9 s, 455 MiB).
MAX_FILE_PART_BYTES = 64_000_000
# Parts of runs never recorded (a run that failed and was not re-run) are swept after this long.
ABANDONED_AFTER = timedelta(days=7)

VALID = "valid"
REJECTS = "rejects"

READ_CHUNK_VECTORS = 50  # DuckDB vectors of 2,048 rows per chunk read: ~100,000 rows
_CARDINALITY_SAMPLE = 10_000


@dataclass(frozen=True)
class PartsKey:
    """One set of parts: the valid rows or the rejects of one entity in one run."""

    dag_id: str
    run_id: str
    entity: str
    kind: str  # VALID or REJECTS


class PartStore(Protocol):
    """Where numbered Parquet parts are kept, addressed by a location string that names the store."""

    max_part_bytes: int  # the largest part this store keeps (a part aims at half of it)

    def location(self, key: PartsKey) -> str:
        """The location of a set of parts (what XCom carries)."""

    def put(self, location: str, part: int, data: bytes) -> None:
        """Store part number `part` (replacing it if present)."""

    def get(self, location: str, part: int) -> bytes:
        """The bytes of one part."""

    def part_numbers(self, location: str) -> list[int]:
        """The numbers of the parts stored at `location`, ascending."""

    def remove(self, location: str) -> None:
        """Delete every part at `location`."""

    def remove_run(self, dag_id: str, run_id: str) -> None:
        """Delete every part of one run (and parts abandoned long ago, where the store can tell)."""


class WarehouseParts:
    """Parts as rows of the warehouse table `mogulflow_staging` (the default: every worker reaches it)."""

    PREFIX = f"{STAGING_TABLE}:"
    max_part_bytes = MAX_PART_BYTES
    _KEY = "dag_id = :dag_id AND run_id = :run_id AND entity = :entity AND kind = :kind"

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def location(self, key: PartsKey) -> str:
        return f"{self.PREFIX}{key.dag_id}/{key.run_id}/{key.entity}/{key.kind}"

    @classmethod
    def holds(cls, location: str) -> bool:
        return location.startswith(cls.PREFIX)

    def _key(self, location: str) -> dict[str, str]:
        # A dag id has no "/", entity and kind neither; the run id is whatever lies between.
        dag_id, rest = location.removeprefix(self.PREFIX).split("/", 1)
        run_id, entity, kind = rest.rsplit("/", 2)
        return {"dag_id": dag_id, "run_id": run_id, "entity": entity, "kind": kind}

    def put(self, location: str, part: int, data: bytes) -> None:
        params = {**self._key(location), "part": part}
        self.warehouse.execute(f"DELETE FROM {STAGING_TABLE} WHERE {self._KEY} AND part = :part", params)
        self.warehouse.execute(
            f"INSERT INTO {STAGING_TABLE} (dag_id, run_id, entity, kind, part, data, staged_at)"
            " VALUES (:dag_id, :run_id, :entity, :kind, :part, :data, :staged_at)",
            {**params, "data": data, "staged_at": datetime.now(UTC).replace(tzinfo=None)},
        )

    def get(self, location: str, part: int) -> bytes:
        params = {**self._key(location), "part": part}
        data = self.warehouse.scalar(
            f"SELECT data FROM {STAGING_TABLE} WHERE {self._KEY} AND part = :part", params
        )
        if data is None:
            raise FileNotFoundError(f"part {part} of {location} is not staged")
        return bytes(data)  # bytearray (DuckDB) or memoryview (psycopg2)

    def part_numbers(self, location: str) -> list[int]:
        frame = self.warehouse.query_frame(
            f"SELECT part FROM {STAGING_TABLE} WHERE {self._KEY} ORDER BY part", self._key(location)
        )
        return [int(part) for part in frame["part"]]

    def remove(self, location: str) -> None:
        self.warehouse.execute(f"DELETE FROM {STAGING_TABLE} WHERE {self._KEY}", self._key(location))

    def remove_run(self, dag_id: str, run_id: str) -> None:
        if not self.warehouse.table_exists(STAGING_TABLE):
            return
        abandoned = datetime.now(UTC).replace(tzinfo=None) - ABANDONED_AFTER
        self.warehouse.execute(
            f"DELETE FROM {STAGING_TABLE}"
            " WHERE (dag_id = :dag_id AND run_id = :run_id) OR staged_at < :abandoned",
            {"dag_id": dag_id, "run_id": run_id, "abandoned": abandoned},
        )


class ObjectStoreParts:
    """Parts as files under an fsspec URL: `<url>/<dag_id>/<run>/<entity>_<kind>/part-000000.parquet`."""

    _PART = re.compile(r"part-(\d+)\.parquet$")
    max_part_bytes = MAX_FILE_PART_BYTES

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def location(self, key: PartsKey) -> str:
        return f"{self._run_url(key.dag_id, key.run_id)}/{key.entity}_{key.kind}"

    def _run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.url}/{dag_id}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}"

    @staticmethod
    def _folder(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
        import fsspec

        return fsspec.core.url_to_fs(location)

    def put(self, location: str, part: int, data: bytes) -> None:
        fs, folder = self._folder(location)
        fs.makedirs(folder, exist_ok=True)
        fs.pipe_file(f"{folder}/part-{part:06d}.parquet", data)

    def get(self, location: str, part: int) -> bytes:
        fs, folder = self._folder(location)
        return fs.cat_file(f"{folder}/part-{part:06d}.parquet")

    def part_numbers(self, location: str) -> list[int]:
        fs, folder = self._folder(location)
        fs.invalidate_cache(folder)  # another worker wrote them: a cached listing would miss parts
        try:
            names = fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(int(found.group(1)) for name in names if (found := self._PART.search(name)))

    def remove(self, location: str) -> None:
        fs, folder = self._folder(location)
        if fs.exists(folder):
            fs.rm(folder, recursive=True)

    def remove_run(self, dag_id: str, run_id: str) -> None:
        self.remove(self._run_url(dag_id, run_id))


def configured_store(warehouse: Warehouse) -> PartStore:
    """Where this deployment stages: `$MOGULFLOW_STAGING_URL` (or `_DIR`), else with the warehouse.

    With the warehouse means its table `mogulflow_staging`, except for a DuckDB file: there the
    parts go to a folder beside it (`<file>.staging/`), which exactly the machines that open the
    file reach. DuckDB would keep every staged block it read in its buffer pool (a 1M-lead dry run
    peaked 150 MiB higher) and scans the table for each part.
    """
    url = os.environ.get(STAGING_URL_ENV)
    if url:
        return ObjectStoreParts(url)
    folder = os.environ.get(STAGING_DIR_ENV)
    if folder:
        return ObjectStoreParts(Path(folder).resolve().as_uri())
    duckdb_file = _duckdb_file(warehouse)
    if duckdb_file:
        return ObjectStoreParts(Path(f"{duckdb_file}.staging").resolve().as_uri())
    return WarehouseParts(warehouse)


def _duckdb_file(warehouse: Warehouse) -> str | None:
    """The file of a DuckDB warehouse (None for PostgreSQL or an in-memory DuckDB)."""
    if warehouse.dialect.name != "duckdb":
        return None
    return warehouse.scalar("SELECT path FROM duckdb_databases() WHERE database_name = current_database()")


def _store_at(warehouse: Warehouse, location: str) -> PartStore:
    """The store a location names (whatever the settings say now: the parts are where they were put)."""
    return WarehouseParts(warehouse) if WarehouseParts.holds(location) else ObjectStoreParts(location)


# ---- Parquet parts ------------------------------------------------------------------------------


def _connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def _to_parquet(frame: pd.DataFrame) -> bytes:
    # DuckDB writes Parquet to files only; the file is this task's scratch, never handed on.
    with tempfile.TemporaryDirectory(prefix="mogulflow-part-") as scratch:
        path = Path(scratch) / "part.parquet"
        with _connection() as connection:
            connection.register("frame", frame)
            connection.execute("COPY frame TO ? (FORMAT parquet, COMPRESSION zstd)", [str(path)])
        return path.read_bytes()


def _parquet_pieces(
    frame: pd.DataFrame, rows_per_piece: int, max_bytes: int = MAX_PART_BYTES
) -> Iterator[tuple[int, bytes]]:
    """`frame` as Parquet pieces of at most `max_bytes`, in row order: (rows, bytes) each.

    An empty frame gives one empty piece (it keeps the columns).
    """
    step = max(1, rows_per_piece)
    for start in range(0, max(len(frame), 1), step):
        piece = frame.iloc[start : start + step]
        data = _to_parquet(piece)
        if len(data) > max_bytes and len(piece) > 1:
            yield from _parquet_pieces(piece, (len(piece) + 1) // 2, max_bytes)
        else:
            yield len(piece), data


def _iter_part(data: bytes, columns: Sequence[str] | None) -> Iterator[pd.DataFrame]:
    selected = ", ".join(f'"{column}"' for column in columns) if columns else "*"
    with tempfile.TemporaryDirectory(prefix="mogulflow-part-") as scratch:
        path = Path(scratch) / "part.parquet"
        path.write_bytes(data)
        with _connection() as connection:
            cursor = connection.execute(f"SELECT {selected} FROM read_parquet(?)", [str(path)])
            first = True
            while len(chunk := cursor.fetch_df_chunk(READ_CHUNK_VECTORS)) or first:
                first = False
                yield chunk


def _without_rows(data: bytes, rows: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mogulflow-part-") as scratch:
        source, target = Path(scratch) / "part.parquet", Path(scratch) / "kept.parquet"
        source.write_bytes(data)
        with _connection() as connection:
            connection.register("dropped", pd.DataFrame({"row": rows.astype(np.int64)}))
            connection.execute(
                "COPY (SELECT * EXCLUDE (file_row_number) FROM read_parquet(?, file_row_number = true)"
                " WHERE file_row_number NOT IN (SELECT row FROM dropped) ORDER BY file_row_number)"
                " TO ? (FORMAT parquet, COMPRESSION zstd)",
                [str(source), str(target)],
            )
        return target.read_bytes()


class _PartWriter:
    """Writes frames to one location as numbered parts, each below the store's `max_part_bytes`."""

    def __init__(self, store: PartStore, location: str) -> None:
        self.store = store
        self.location = location
        self.parts = 0
        self._rows_per_part = 0  # learnt from the bytes per row of what was written so far
        self._rows = 0
        self._bytes = 0

    def write(self, frame: pd.DataFrame) -> list[tuple[int, int]]:
        """Write `frame`; return its parts as (part number, rows), in row order."""
        written = []
        limit = self.store.max_part_bytes
        for rows, data in _parquet_pieces(frame, self._rows_per_part or len(frame), limit):
            self.store.put(self.location, self.parts, data)
            written.append((self.parts, rows))
            self.parts += 1
            self._rows += rows
            self._bytes += len(data)
        if self._rows:
            self._rows_per_part = max(1, limit // 2 * self._rows // self._bytes)
        return written


def iter_frames(
    warehouse: Warehouse, location: str, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """The frames staged at `location`, in row order, one part at a time (at least one frame).

    What a step that handles rows one chunk at a time reads: only one part sits in memory. In text
    columns of few distinct values, equal values share one string object (a million staged leads
    then take ~250 MB instead of ~520 MB).
    """
    store = _store_at(warehouse, location)
    numbers = store.part_numbers(location)
    if not numbers:
        raise FileNotFoundError(
            f"nothing is staged at {location}: the task that stages it did not finish in this run, or "
            "the run's staging was removed when record_run recorded it; re-run the run's first tasks"
        )
    for number in numbers:
        for chunk in _iter_part(store.get(location, number), columns):
            yield _share_repeated_strings(chunk)


def read_frame(warehouse: Warehouse, location: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every row staged at `location` (only `columns`, when given) as one frame."""
    parts = list(iter_frames(warehouse, location, columns))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _share_repeated_strings(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_string_dtype(values.dtype) and (
            values.iloc[:_CARDINALITY_SAMPLE].nunique() <= _CARDINALITY_SAMPLE // 2
        ):
            codes, distinct = pd.factorize(values)
            frame[column] = pd.Series(pd.array(distinct, dtype=values.dtype).take(codes, allow_fill=True))
    return frame


# ---- a run's staging ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStaging:
    """Where one DAG run's tasks stage what they hand each other."""

    store: PartStore
    dag_id: str
    run_id: str

    def location(self, entity: Entity, kind: str) -> str:
        """The location of one entity's valid rows or rejects in this run."""
        return self.store.location(PartsKey(self.dag_id, self.run_id, str(entity), kind))

    def valid_parts(self, entity: Entity) -> ValidParts:
        """A sink for the entity's valid rows (replacing what an earlier attempt staged)."""
        return ValidParts(self.store, self.location(entity, VALID))

    def stage_rejects(
        self, entity: Entity, rejected: Sequence[RejectedRow], extracted: int, valid: int, valid_location: str
    ) -> StagedExtract:
        """Stage one entity's rejects beside its valid rows (at `valid_location`); return its report."""
        location = self.location(entity, REJECTS)
        self.store.remove(location)
        _PartWriter(self.store, location).write(_rejects_frame(rejected))
        by_rule: Counter[str] = Counter()
        for reject in rejected:
            for failure in reject.failures:
                by_rule[f"{failure.field}: {failure.rule}" if failure.field else failure.rule] += 1
        return StagedExtract(
            entity=entity,
            extracted=extracted,
            valid=valid,
            rejected=len(rejected),
            rejects_by_rule=dict(by_rule.most_common()),
            valid_path=valid_location,
            rejects_path=location,
        )


def for_run(warehouse: Warehouse, dag_id: str, run_id: str) -> RunStaging:
    """The staging of one run, in the store this deployment configures (`configured_store`)."""
    return RunStaging(configured_store(warehouse), dag_id, run_id)


def remove_run(warehouse: Warehouse, dag_id: str, run_id: str) -> None:
    """Delete a run's staged parts once its account is recorded."""
    configured_store(warehouse).remove_run(dag_id, run_id)


class ValidParts:
    """One entity's valid rows, staged as numbered Parquet parts as validation finds them.

    A `mogulflow.validate.ValidSink`: each chunk's rows are written as they pass (as one or more
    parts of at most the store's `max_part_bytes`), so a whole extract never sits in memory. What an earlier
    attempt of the task staged is removed first; the next task reads the parts only once this one
    has succeeded, so it never sees a half-written set.
    """

    def __init__(self, store: PartStore, location: str) -> None:
        self.store = store
        self.location = location
        store.remove(location)
        self._writer = _PartWriter(store, location)
        self._chunks: list[list[tuple[int, int]]] = []  # per appended chunk: its (part, rows)

    def append(self, frame: pd.DataFrame) -> None:
        self._chunks.append(self._writer.write(frame))

    def drop(self, part: int, rows: np.ndarray) -> None:
        """Rewrite chunk `part` without the rows at `rows` (duplicates found once the extract was seen)."""
        offset = 0
        for number, count in self._chunks[part]:
            mine = rows[(rows >= offset) & (rows < offset + count)] - offset
            if len(mine):
                self.store.put(
                    self.location, number, _without_rows(self.store.get(self.location, number), mine)
                )
            offset += count

    def finish(self) -> str:
        """The location of the staged parts (what XCom carries)."""
        return self.location


def _rejects_frame(rejects: Sequence[RejectedRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": [str(r.entity) for r in rejects],
            "source_id": [r.source_id for r in rejects],
            "reason": [r.reason for r in rejects],
            "rules": [
                "; ".join(f"{f.field}: {f.rule}" if f.field else f.rule for f in r.failures) for r in rejects
            ],
            "waits_for_parent": [waits_for_parent(r) for r in rejects],
        },
        dtype="object",
    )


@dataclass(frozen=True)
class StagedReject:
    """A rejected row as staged: enough to record it, and whether it waits for its lead or plan."""

    row: RejectedRow
    waits_for_parent: bool


def read_rejects(warehouse: Warehouse, part: StagedExtract) -> list[StagedReject]:
    """The rejected rows an extract staged."""
    frame = read_frame(warehouse, part.rejects_path)
    return [
        StagedReject(
            RejectedRow(part.entity, None if pd.isna(row.source_id) else str(row.source_id), str(row.reason)),
            bool(row.waits_for_parent),
        )
        for row in frame.itertuples(index=False)
    ]
