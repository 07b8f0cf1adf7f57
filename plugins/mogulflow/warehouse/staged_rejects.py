"""Staged rejects: one entity's rejected rows, staged beside its valid rows and read back.

Staged rejects: one entity's rejected rows as a frame beside its valid rows, and read back as
`RejectedRow`s for `mogulflow_rejects` (with whether each waits for its lead or plan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from mogulflow.values.rejected_rows import RejectedRow, waits_for_parent
from mogulflow.values.step_reports import StagedExtract
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.parquet_parts import read_frame

if TYPE_CHECKING:
    pass


def rejects_frame(rejects: Sequence[RejectedRow]) -> pd.DataFrame:
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
