"""Waiting: rows rejected only because the lead or plan they name was not known yet.

Such a row (a trial before its lead, a conversion before its lead was synced) is rejected and
recorded when it comes in, and marked `waiting` in the sync state
(`mogulflow.warehouse.sync_state.mark_waiting`). The extract SQL reads waiting rows again on every
run; `without_still_waiting` drops those whose
parent is still unknown, so that a run's counts stay those of its window, and lets them through
once it is known.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import pandas as pd

from mogulflow.values.entities import Entity, Window

log = logging.getLogger(__name__)


def without_still_waiting(
    rows: pd.DataFrame,
    entity: Entity,
    *,
    window: Window,
    time_column: str,
    waiting: Collection[str],
    known_parents: Mapping[str, Collection[str]],
) -> pd.DataFrame:
    """Drop the waiting rows from outside the window whose parents (column → known ids) are unknown."""
    if not waiting or rows.empty:
        return rows
    in_window = pd.Series(True, index=rows.index)
    if not window.full_refresh:
        moment = pd.to_datetime(rows[time_column], utc=True)
        in_window = (moment >= pd.Timestamp(window.start)) & (moment < pd.Timestamp(window.end))
    ready = pd.Series(True, index=rows.index)
    for column, known in known_parents.items():
        ready &= rows[column].isin(list(known))
    keep = in_window | ~rows[entity.id_column].isin(list(waiting)) | ready
    if not keep.all():
        log.info(
            "%d %s rows still wait for their lead or plan (rejected when they came in).",
            int((~keep).sum()),
            entity,
        )
    return rows.loc[keep].reset_index(drop=True)
