"""Created objects: the one module that owns `mogulflow_created`, what mogulflow created itself.

A mirror delete may only remove an object listed here: one ChartMogul confirmed mogulflow created
(a customer, a plan, a trial invoice), in that data source. Objects found in ChartMogul already (the
first contact's listing, an "already exists" answer) are never listed, so never mirrored away.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from mogulflow.values.constants import CREATED_TABLE
from mogulflow.values.entities import Entity
from mogulflow.warehouse.connection import Warehouse, naive_utc

_COLUMNS = ("entity", "data_source_uuid", "external_id", "run_id", "created_at")
_KEY = ("entity", "data_source_uuid", "external_id")


def remember_created(
    warehouse: Warehouse, created: Iterable[tuple[Entity, str, str]], *, run_id: str, at: datetime
) -> None:
    """List objects ChartMogul confirmed mogulflow created: (entity, data source, external id)."""
    rows = [
        (str(entity), source, external_id, run_id, naive_utc(at)) for entity, source, external_id in created
    ]
    warehouse.upsert_rows(CREATED_TABLE, _COLUMNS, rows, key=_KEY)


def created_ids(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> set[str]:
    """External ids of the objects of one entity mogulflow created in one data source."""
    frame = warehouse.query_frame(
        f"SELECT external_id FROM {CREATED_TABLE} WHERE entity = :entity AND data_source_uuid = :ds",
        {"entity": str(entity), "ds": data_source_uuid},
    )
    return set(frame["external_id"].astype(str).tolist())


def forget_created(
    warehouse: Warehouse, entity: Entity, data_source_uuid: str, external_ids: Collection[str]
) -> None:
    """Remove deleted (or erased) objects from the list."""
    for external_id in external_ids:
        warehouse.execute(
            f"DELETE FROM {CREATED_TABLE} WHERE entity = :entity AND data_source_uuid = :ds "
            "AND external_id = :external_id",
            {"entity": str(entity), "ds": data_source_uuid, "external_id": external_id},
        )
