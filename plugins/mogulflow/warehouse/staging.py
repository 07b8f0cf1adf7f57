"""Staging: hand validated rows from one task to the next as Parquet parts, never through a local folder.

The tasks of one run may run on different machines (a CeleryExecutor cluster), so the parts live in
a store every worker reaches (`mogulflow.warehouse.part_stores`). XCom carries a set of parts'
location (a string naming its store); the frames stay in the store and are written and read one part
at a time (`mogulflow.warehouse.parquet_parts`). A task that stages again (an Airflow retry) first
removes what its earlier attempt left; `remove_run` deletes a run's parts once its account is recorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mogulflow.values.entities import Entity
from mogulflow.values.rejected_rows import RejectedRow
from mogulflow.values.step_reports import StagedExtract
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.parquet_parts import PartWriter, without_rows
from mogulflow.warehouse.part_stores import PartsKey, PartStore, configured_store
from mogulflow.warehouse.staged_rejects import rejects_frame

if TYPE_CHECKING:
    pass


VALID = "valid"
REJECTS = "rejects"


# ---- Parquet parts ------------------------------------------------------------------------------


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
        PartWriter(self.store, location).write(rejects_frame(rejected))
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

    A `mogulflow.validate.validator.ValidSink`: each chunk's rows are written as they pass (as one or more
    parts of at most the store's `max_part_bytes`), so a whole extract never sits in memory. What an earlier
    attempt of the task staged is removed first; the next task reads the parts only once this one
    has succeeded, so it never sees a half-written set.
    """

    def __init__(self, store: PartStore, location: str) -> None:
        self.store = store
        self.location = location
        store.remove(location)
        self._writer = PartWriter(store, location)
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
                    self.location, number, without_rows(self.store.get(self.location, number), mine)
                )
            offset += count

    def finish(self) -> str:
        """The location of the staged parts (what XCom carries)."""
        return self.location
