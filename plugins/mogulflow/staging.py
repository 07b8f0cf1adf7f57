"""Staging: hand validated rows from one task to the next as Parquet files, not through XCom.

XCom carries the paths; the frames stay on disk. The folder is `$MOGULFLOW_STAGING_DIR`, else
`$AIRFLOW_HOME/mogulflow/staging`: on a multi-machine deployment point it at storage every worker
shares.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from mogulflow.model import Entity, RejectedRow, waits_for_parent
from mogulflow.reports import StagedExtract

STAGING_DIR_ENV = "MOGULFLOW_STAGING_DIR"


def staging_root() -> Path:
    """The folder all runs stage under."""
    configured = os.environ.get(STAGING_DIR_ENV)
    if configured:
        return Path(configured)
    airflow_home = os.environ.get("AIRFLOW_HOME")
    if airflow_home:
        return Path(airflow_home) / "mogulflow" / "staging"
    return Path(tempfile.gettempdir()) / "mogulflow-staging"


def run_folder(dag_id: str, run_id: str) -> Path:
    """The staging folder of one DAG run (created if missing)."""
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    folder = staging_root() / dag_id / safe_run
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def write_frame(path: Path, frame: pd.DataFrame) -> Path:
    """Write a frame to Parquet (atomically: a retried task never reads half a file)."""
    partial = path.with_suffix(".partial")
    with _connection() as connection:
        connection.register("frame", frame)
        connection.execute("COPY frame TO ? (FORMAT parquet)", [str(partial)])
    os.replace(partial, path)
    return path


READ_CHUNK_VECTORS = 50  # DuckDB vectors of 2,048 rows per chunk read: ~100,000 rows
_CARDINALITY_SAMPLE = 10_000


def read_frame(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a frame written by `write_frame` (only `columns`, when given).

    Read in chunks, and in text columns of few distinct values equal values share one string
    object: a million staged leads then take ~250 MB instead of ~520 MB.
    """
    parts = list(iter_frames(path, columns))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def iter_frames(path: str | Path, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """The frame written by `write_frame`, in row order, ~100,000 rows at a time (at least one frame).

    What a step that handles rows one chunk at a time reads: only one chunk sits in memory.
    """
    selected = ", ".join(f'"{column}"' for column in columns) if columns else "*"
    # The parts of a `ValidParts` glob are read one after the other, in name order: DuckDB reading
    # them all at once buffers several, and keeping their row order would cost it more still.
    files = sorted(glob.glob(str(path))) if glob.has_magic(str(path)) else [str(path)]
    first = True
    with _connection() as connection:
        for file in files or [str(path)]:
            cursor = connection.execute(f"SELECT {selected} FROM read_parquet(?)", [file])
            while len(part := cursor.fetch_df_chunk(READ_CHUNK_VECTORS)) or first:
                first = False
                yield _share_repeated_strings(part)


def _share_repeated_strings(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_string_dtype(values.dtype) and (
            values.iloc[:_CARDINALITY_SAMPLE].nunique() <= _CARDINALITY_SAMPLE // 2
        ):
            codes, distinct = pd.factorize(values)
            frame[column] = pd.Series(pd.array(distinct, dtype=values.dtype).take(codes, allow_fill=True))
    return frame


def remove_run_folder(dag_id: str, run_id: str) -> None:
    """Delete a run's staged files once its account is recorded."""
    shutil.rmtree(run_folder(dag_id, run_id), ignore_errors=True)


# ---- a validated extract, staged ------------------------------------------------------------------


def stage_rejects(
    folder: Path,
    entity: Entity,
    rejected: Sequence[RejectedRow],
    extracted: int,
    valid: int,
    valid_path: str | Path,
) -> StagedExtract:
    """Write one entity's rejects next to its staged valid rows (`valid_path`); return its report."""
    rejects_path = write_frame(folder / f"{entity}_rejects.parquet", _rejects_frame(rejected))
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
        valid_path=str(valid_path),
        rejects_path=str(rejects_path),
    )


class ValidParts:
    """One entity's valid rows, staged as numbered Parquet parts as validation finds them.

    A `mogulflow.validate.ValidSink`: each chunk's rows are written as they pass, so a whole extract
    never sits in memory. The parts are built in a `.partial` folder, moved in place by `finish`
    (a retried task never reads a half-written set); `path` is their glob, which `read_frame` and
    `iter_frames` read in part order, so in the extract's row order.
    """

    def __init__(self, folder: Path, entity: Entity) -> None:
        self.folder = folder / f"{entity}_valid"
        self._building = folder / f"{entity}_valid.partial"
        shutil.rmtree(self._building, ignore_errors=True)
        self._building.mkdir(parents=True)
        self._parts = 0

    @property
    def path(self) -> str:
        return str(self.folder / "*.parquet")

    def _part(self, part: int) -> Path:
        return self._building / f"part-{part:06d}.parquet"  # zero-padded: names sort in part order

    def append(self, frame: pd.DataFrame) -> None:
        write_frame(self._part(self._parts), frame)
        self._parts += 1

    def drop(self, part: int, rows: np.ndarray) -> None:
        """Rewrite one part without the rows at `rows` (duplicates found once the whole extract was seen)."""
        path = self._part(part)
        partial = path.with_suffix(".partial")
        with _connection() as connection:
            connection.register("dropped", pd.DataFrame({"row": rows.astype(np.int64)}))
            connection.execute(
                "COPY (SELECT * EXCLUDE (file_row_number) FROM read_parquet(?, file_row_number = true)"
                " WHERE file_row_number NOT IN (SELECT row FROM dropped) ORDER BY file_row_number)"
                " TO ? (FORMAT parquet)",
                [str(path), str(partial)],
            )
        os.replace(partial, path)

    def finish(self) -> str:
        """Put the parts in place; return `path`."""
        shutil.rmtree(self.folder, ignore_errors=True)
        os.replace(self._building, self.folder)
        return self.path


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


def read_rejects(part: StagedExtract) -> list[StagedReject]:
    """The rejected rows an extract staged."""
    frame = read_frame(part.rejects_path)
    return [
        StagedReject(
            RejectedRow(part.entity, None if pd.isna(row.source_id) else str(row.source_id), str(row.reason)),
            bool(row.waits_for_parent),
        )
        for row in frame.itertuples(index=False)
    ]
