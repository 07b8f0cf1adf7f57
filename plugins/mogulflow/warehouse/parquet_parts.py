"""Parquet parts: frames written to a part store as numbered parts, read back one at a time.

Parquet parts: frames written to a part store as numbered Parquet parts, and read back one part
(and one DuckDB batch) at a time, so that a whole extract never sits in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.part_stores import MAX_PART_BYTES, PartStore, store_at
from mogulflow.warehouse.shared_strings import share_repeated_strings

if TYPE_CHECKING:
    pass


READ_CHUNK_VECTORS = 50  # DuckDB vectors of 2,048 rows per chunk read: ~100,000 rows


def scratch_duckdb() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def to_parquet(frame: pd.DataFrame) -> bytes:
    # DuckDB writes Parquet to files only; the file is this task's scratch, never handed on.
    with tempfile.TemporaryDirectory(prefix="mogulflow-part-") as scratch:
        path = Path(scratch) / "part.parquet"
        with scratch_duckdb() as connection:
            connection.register("frame", frame)
            connection.execute("COPY frame TO ? (FORMAT parquet, COMPRESSION zstd)", [str(path)])
        return path.read_bytes()


def parquet_pieces(
    frame: pd.DataFrame, rows_per_piece: int, max_bytes: int = MAX_PART_BYTES
) -> Iterator[tuple[int, bytes]]:
    """`frame` as Parquet pieces of at most `max_bytes`, in row order: (rows, bytes) each.

    An empty frame gives one empty piece (it keeps the columns).
    """
    step = max(1, rows_per_piece)
    for start in range(0, max(len(frame), 1), step):
        piece = frame.iloc[start : start + step]
        data = to_parquet(piece)
        if len(data) > max_bytes and len(piece) > 1:
            yield from parquet_pieces(piece, (len(piece) + 1) // 2, max_bytes)
        else:
            yield len(piece), data


def iter_part(data: bytes, columns: Sequence[str] | None) -> Iterator[pd.DataFrame]:
    selected = ", ".join(f'"{column}"' for column in columns) if columns else "*"
    with tempfile.TemporaryDirectory(prefix="mogulflow-part-") as scratch:
        path = Path(scratch) / "part.parquet"
        path.write_bytes(data)
        with scratch_duckdb() as connection:
            cursor = connection.execute(f"SELECT {selected} FROM read_parquet(?)", [str(path)])
            first = True
            while len(chunk := cursor.fetch_df_chunk(READ_CHUNK_VECTORS)) or first:
                first = False
                yield chunk


def without_rows(data: bytes, rows: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mogulflow-part-") as scratch:
        source, target = Path(scratch) / "part.parquet", Path(scratch) / "kept.parquet"
        source.write_bytes(data)
        with scratch_duckdb() as connection:
            connection.register("dropped", pd.DataFrame({"row": rows.astype(np.int64)}))
            connection.execute(
                "COPY (SELECT * EXCLUDE (file_row_number) FROM read_parquet(?, file_row_number = true)"
                " WHERE file_row_number NOT IN (SELECT row FROM dropped) ORDER BY file_row_number)"
                " TO ? (FORMAT parquet, COMPRESSION zstd)",
                [str(source), str(target)],
            )
        return target.read_bytes()


class PartWriter:
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
        for rows, data in parquet_pieces(frame, self._rows_per_part or len(frame), limit):
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
    store = store_at(warehouse, location)
    numbers = store.part_numbers(location)
    if not numbers:
        raise FileNotFoundError(
            f"nothing is staged at {location}: the task that stages it did not finish in this run, or "
            "the run's staging was removed when record_run recorded it; re-run the run's first tasks"
        )
    for number in numbers:
        for chunk in iter_part(store.get(location, number), columns):
            yield share_repeated_strings(chunk)


def read_frame(warehouse: Warehouse, location: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every row staged at `location` (only `columns`, when given) as one frame."""
    parts = list(iter_frames(warehouse, location, columns))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
