"""Extract: read one entity's source rows for a run's window with the SQL in `mogulflow/sql/`."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from mogulflow.failures import is_permanent
from mogulflow.values.entities import OPTIONAL_ENTITIES, Entity, Window
from mogulflow.warehouse.connection import DEFAULT_CHUNK_ROWS, Warehouse, naive_utc
from mogulflow.warehouse.sql_files import read_sql

TEMPLATES = {
    Entity.LEAD: "extract_leads.sql",
    Entity.PLAN: "extract_plans.sql",
    Entity.TRIAL: "extract_trials.sql",
    Entity.CONVERSION: "extract_conversions.sql",
    Entity.ATTRIBUTE: "extract_lead_attributes.sql",
    Entity.TAG: "extract_lead_tags.sql",
}


def window_params(window: Window, data_source_uuid: str | None) -> dict[str, object]:
    """Bind parameters shared by every extract template (timestamps as naive UTC)."""

    return {
        "full_refresh": window.full_refresh,
        "window_start": naive_utc(window.start),
        "window_end": naive_utc(window.end),
        "data_source_uuid": data_source_uuid or "",
    }


def iter_entity_chunks(
    warehouse: Warehouse,
    entity: Entity,
    window: Window,
    *,
    data_source_uuid: str | None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Stream one entity's rows for `window` in chunks (at least one, possibly empty, frame)."""
    yield from warehouse.iter_frames(
        read_sql(TEMPLATES[entity], warehouse.dialect.name),
        window_params(window, data_source_uuid),
        chunk_rows=chunk_rows,
    )


def extract_entity(
    warehouse: Warehouse, entity: Entity, window: Window, *, data_source_uuid: str | None
) -> pd.DataFrame:
    """All of one entity's rows for `window`, as one DataFrame."""
    chunks = list(iter_entity_chunks(warehouse, entity, window, data_source_uuid=data_source_uuid))
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def optional_sources(warehouse: Warehouse) -> tuple[Entity, ...]:
    """The optional entities (attributes, tags) whose extract SQL runs in this warehouse: their feature
    is on. A warehouse that refuses the SQL (no such table) has it off; an outage is raised."""
    present = []
    for entity in OPTIONAL_ENTITIES:
        sql = read_sql(TEMPLATES[entity], warehouse.dialect.name).strip().rstrip(";")
        try:
            warehouse.query_frame(
                f"SELECT * FROM ({sql}) AS probe LIMIT 0", window_params(Window(None, None, True), "")
            )
        except Exception as error:
            if not is_permanent(error):
                raise
            continue
        present.append(entity)
    return tuple(present)


def ids_of_lead(
    warehouse: Warehouse, entity: Entity, lead_id: str, *, data_source_uuid: str | None
) -> set[str]:
    """The ids of one lead's rows of an entity (its trials), as the entity's extract SQL reads them
    on a full refresh (an erasure removes what mogulflow keeps about each)."""
    sql = read_sql(TEMPLATES[entity], warehouse.dialect.name).strip().rstrip(";")
    frame = warehouse.query_frame(
        f"SELECT {entity.id_column} AS id FROM ({sql}) AS rows_of_lead WHERE lead_id = :erased_lead_id",
        {**window_params(Window(None, None, True), data_source_uuid), "erased_lead_id": lead_id},
    )
    return {str(value).strip() for value in frame["id"].dropna()}
