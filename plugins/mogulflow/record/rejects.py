"""Rejects: record the rows a run rejected, and mark those that wait for their lead or plan."""

from __future__ import annotations

import logging

from mogulflow.values.constants import SAMPLE_SIZE
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import ExtractReport
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.run_records import record_rejects
from mogulflow.warehouse.staged_rejects import read_rejects
from mogulflow.warehouse.sync_state import mark_waiting

log = logging.getLogger(__name__)


def write_rejects(
    warehouse: Warehouse, settings: RunSettings, extract: ExtractReport, data_source_uuid: str | None
) -> dict[Entity, int]:
    """Copy the staged rejects of every entity into `mogulflow_rejects`; returns how many per entity.

    Rows rejected only because their lead or plan is not known yet are marked `waiting` in the
    sync state (not in a dry run), so the next runs read them again until it is.
    """
    ensure_tables(warehouse)
    written: dict[Entity, int] = {}
    for entity, part in extract.parts.items():
        staged = read_rejects(warehouse, part)
        written[entity] = record_rejects(
            warehouse,
            run_id=settings.run_id,
            dag_id=settings.dag_id,
            rejects=[reject.row for reject in staged],
            at=settings.started_at,
        )
        waiting = [r.row.source_id for r in staged if r.waits_for_parent and r.row.source_id]
        if waiting and data_source_uuid and not settings.dry_run:
            marked = mark_waiting(
                warehouse, entity, data_source_uuid, waiting, run_id=settings.run_id, at=settings.started_at
            )
            log.warning(
                "%d %s row(s) name a lead or plan not known yet (%d newly waiting); the next runs read "
                "them again: %s",
                len(waiting),
                entity,
                marked,
                waiting[:SAMPLE_SIZE],
            )
    if any(written.values()):
        log.warning(
            "Rejected rows recorded in mogulflow_rejects (run_id=%s): %s",
            settings.run_id,
            {str(entity): count for entity, count in written.items()},
        )
    return written
