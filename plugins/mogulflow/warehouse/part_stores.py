"""Part stores: where staged Parquet parts are kept, so that every worker of a run reaches them.

By default with the warehouse: its table `mogulflow_staging` (one row per part), or, for a DuckDB
file (which only one machine opens anyway), a folder beside the file. Or under an object-store URL
the deployment sets, `$MOGULFLOW_STAGING_URL` (`s3://bucket/prefix`, `gs://...`, any fsspec URL; a
local `file:///...` folder only when set explicitly, e.g. a share every worker mounts);
`$MOGULFLOW_STAGING_DIR`, the older setting, names such a local folder. A part in the warehouse
holds at most `MAX_PART_BYTES`, which every warehouse's binary type takes; files may be larger
(`MAX_FILE_PART_BYTES`): fewer parts, less per-part work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mogulflow.values.constants import STAGING_TABLE
from mogulflow.warehouse.connection import Warehouse

if TYPE_CHECKING:
    import fsspec


STAGING_URL_ENV = "MOGULFLOW_STAGING_URL"


STAGING_DIR_ENV = "MOGULFLOW_STAGING_DIR"


# Redshift's VARBYTE, the smallest binary type of the warehouses mogulflow targets, holds 1,024,000
# bytes. Parts aim at half of it, so a part grown by a wider chunk than the last still fits.
MAX_PART_BYTES = 1_000_000


# A file part is read one DuckDB vector batch at a time, so its size bounds little memory; small
# parts cost time instead (1M-lead dry run, file parts of 1 MB: 32.6 s, 469 MiB; 64 MB: 22.9 s, 455 MiB).
MAX_FILE_PART_BYTES = 64_000_000


# Parts of runs never recorded (a run that failed and was not re-run) are swept after this long.
ABANDONED_AFTER = timedelta(days=7)


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


def store_at(warehouse: Warehouse, location: str) -> PartStore:
    """The store a location names (whatever the settings say now: the parts are where they were put)."""
    return WarehouseParts(warehouse) if WarehouseParts.holds(location) else ObjectStoreParts(location)
