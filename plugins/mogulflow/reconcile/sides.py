"""The two sides a reconciliation compares: what mogulflow synced, and what ChartMogul's data source holds.

Both come out in one form, an `EntitySide` per entity: for each external id, the compared fields
as text (timestamps as `YYYY-MM-DDTHH:MM:SSZ`, whole numbers as digits, blanks as None), so that
the comparison is plain equality and a difference reads the same in `mogulflow_reconciliation`.

The warehouse side is the sync state's `synced` entries (the fields last sent), with each lead's
dates taken from its source row as the default SQL (or the user's) reads it now. ChartMogul's side
is a paginated listing of the data source's customers, plans and invoices. Nothing here writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.shapes import describe_customer, external_ids_in, is_merged, trial_line_item
from mogulflow.extract.source_rows import iter_entity_chunks
from mogulflow.values.entities import Entity, Window
from mogulflow.values.payload_hash import format_api_time
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.sync_state import SyncStatus, load_state

#: The entities a reconciliation compares, in the order a report lists them.
RECONCILED = (Entity.LEAD, Entity.PLAN, Entity.TRIAL)
#: The fields compared per entity, named as the API names them (a trial is its invoice and line item).
COMPARED_FIELDS: Mapping[Entity, tuple[str, ...]] = {
    Entity.LEAD: ("lead_created_at", "free_trial_started_at"),
    Entity.PLAN: ("name", "interval_count", "interval_unit"),
    Entity.TRIAL: ("date", "service_period_end", "amount_in_cents", "currency", "quantity"),
}
#: Sync-state statuses left out of the comparison on both sides: a failed row is re-sent by the next
#: sync anyway, and a merged lead's customer holds the paying customer's data, not ours.
SETTLING = (SyncStatus.FAILED, SyncStatus.MERGED)

#: One row's compared fields, in the order of `COMPARED_FIELDS[entity]`.
FieldValues = tuple[str | None, ...]

_TIMESTAMP_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


@dataclass(frozen=True)
class EntitySide:
    """One side's rows of one entity: the compared fields by external id.

    `settling` (warehouse side only) names the ids whose sync-state entry is failed or merged: the
    comparison leaves them out on both sides. `merged` (ChartMogul's side) names the leads whose
    customer holds other records too, and which customer that is.
    """

    entity: Entity
    rows: Mapping[str, FieldValues]
    settling: frozenset[str] = field(default_factory=frozenset)
    #: (ChartMogul side, leads only) external id → the merged customer that holds it with other records
    merged: Mapping[str, str] = field(default_factory=dict)


def as_text(value: Any) -> str | None:
    """A field value as the reconciliation compares and records it.

    Timestamps (datetimes, or texts that start like one) become `YYYY-MM-DDTHH:MM:SSZ` in UTC
    (naive means UTC), whole numbers their digits, blank texts and missing values None.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return format_api_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _TIMESTAMP_PREFIX.match(text):
            try:
                moment = datetime.fromisoformat(text.replace(" UTC", "+00:00").replace("Z", "+00:00"))
            except ValueError:
                return text
            return as_text(moment)
        return text
    item = getattr(value, "item", None)  # numpy scalars
    return as_text(item()) if item is not None else str(value)


# ---- the warehouse ---------------------------------------------------------------------------------


def read_warehouse_side(warehouse: Warehouse, data_source_uuid: str) -> dict[Entity, EntitySide]:
    """What mogulflow synced into the data source, per entity: its `synced` sync-state entries."""
    sides: dict[Entity, EntitySide] = {}
    for entity in RECONCILED:
        entries = load_state(warehouse, entity, data_source_uuid)
        settling = frozenset(i for i, entry in entries.items() if entry.status in SETTLING)
        payloads = {
            i: entry.payload or {} for i, entry in entries.items() if entry.status is SyncStatus.SYNCED
        }
        if entity is Entity.LEAD:
            rows = _lead_rows(payloads, _source_lead_dates(warehouse, data_source_uuid))
        else:
            names = COMPARED_FIELDS[entity]
            rows = {i: tuple(as_text(payload.get(name)) for name in names) for i, payload in payloads.items()}
        sides[entity] = EntitySide(entity, rows, settling)
    return sides


def _lead_rows(
    payloads: Mapping[str, Mapping[str, Any]], source: Mapping[str, tuple[str | None, str | None]]
) -> dict[str, FieldValues]:
    """Each synced lead's dates as the warehouse has them now.

    From the source row when it still exists, with the contract's default rule: `lead_created_at`
    is the first present of `lead_created_at`, `free_trial_started_at` and the date mogulflow sent
    (which came from the lead's earliest trial). A lead gone from the source keeps what was sent.
    """
    rows: dict[str, FieldValues] = {}
    for external_id, payload in payloads.items():
        sent_created = as_text(payload.get("lead_created_at"))
        dates = source.get(external_id)
        if dates is None:
            rows[external_id] = (sent_created, as_text(payload.get("free_trial_started_at")))
        else:
            created, trial_started = dates
            rows[external_id] = (created or trial_started or sent_created, trial_started)
    return rows


def _source_lead_dates(
    warehouse: Warehouse, data_source_uuid: str
) -> dict[str, tuple[str | None, str | None]]:
    """Every source lead's (lead_created_at, free_trial_started_at), read with the extract SQL.

    Of rows sharing an id, the one with the latest `updated_at` counts, as in a sync.
    """
    columns = ["lead_id", "lead_created_at", "free_trial_started_at", "updated_at"]
    chunks = [
        chunk[columns]
        for chunk in iter_entity_chunks(
            warehouse, Entity.LEAD, Window(None, None, full_refresh=True), data_source_uuid=data_source_uuid
        )
    ]
    leads = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    leads = leads.dropna(subset=["lead_id"])
    for column in columns[1:]:
        # DuckDB hands out datetime64 columns, psycopg datetimes: one aware UTC dtype for both
        leads[column] = pd.to_datetime(leads[column], utc=True)
    leads = leads.sort_values("updated_at", kind="stable", na_position="first").drop_duplicates(
        "lead_id", keep="last"
    )
    return {
        str(lead_id): (as_text(created), as_text(trial_started))
        for lead_id, created, trial_started in zip(
            leads["lead_id"], leads["lead_created_at"], leads["free_trial_started_at"], strict=True
        )
    }


# ---- ChartMogul ------------------------------------------------------------------------------------


def read_chartmogul_side(
    client: ChartMogulClient,
    data_source_uuid: str,
    on_customer: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[Entity, EntitySide]:
    """What the data source holds in ChartMogul, per entity, listed page by page (reads only).

    `on_customer` sees every listed customer (the attributes and tags are compared from the same pages).
    """
    leads: dict[str, FieldValues] = {}
    merged: dict[str, str] = {}
    for customer in client.iter_customers(data_source_uuid=data_source_uuid):
        if on_customer is not None:
            on_customer(customer)
        dates = (as_text(customer.get("lead_created_at")), as_text(customer.get("free_trial_started_at")))
        for external_id in external_ids_in(customer, data_source_uuid):
            leads[external_id] = dates
            if is_merged(customer):
                merged[external_id] = describe_customer(customer)
    plans = {
        str(plan["external_id"]): tuple(as_text(plan.get(name)) for name in COMPARED_FIELDS[Entity.PLAN])
        for plan in _in_source(client.iter_plans(data_source_uuid=data_source_uuid), data_source_uuid)
    }
    trials: dict[str, FieldValues] = {}
    for invoice in _in_source(client.iter_invoices(data_source_uuid=data_source_uuid), data_source_uuid):
        line = trial_line_item(invoice)
        trials[str(invoice["external_id"])] = (
            as_text(invoice.get("date")),
            as_text(line.get("service_period_end")),
            as_text(line.get("amount_in_cents")),
            as_text(invoice.get("currency")),
            as_text(line.get("quantity")),
        )
    return {
        Entity.LEAD: EntitySide(Entity.LEAD, leads, merged=merged),
        Entity.PLAN: EntitySide(Entity.PLAN, plans),
        Entity.TRIAL: EntitySide(Entity.TRIAL, trials),
    }


def _in_source(entries: Iterable[dict[str, Any]], data_source_uuid: str) -> Iterable[dict[str, Any]]:
    """Entries of this data source (a server that ignores the filter still lists only ours here)."""
    return (entry for entry in entries if entry.get("data_source_uuid") in (None, data_source_uuid))
