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
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.shapes import describe_customer, external_ids_in, is_merged, trial_line_item
from mogulflow.extract.source_rows import iter_entity_chunks
from mogulflow.values.constants import STATE_TABLE
from mogulflow.values.entities import Entity, Window
from mogulflow.values.id_arrays import KnownIds, as_id_array, group_ids, id_hashes
from mogulflow.values.payload_hash import format_api_time
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.json_columns import from_json_text
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
#: What `as_text` makes of an instant, and `format_api_time` of any year from 1000 on.
_API_TIMESTAMP = re.compile(r"[1-9]\d{3}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\dZ")


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
    kind = type(value)
    if kind is str and _API_TIMESTAMP.fullmatch(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]  # the form itself (every timestamp mogulflow sent)
    if kind is int:
        return str(value)
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

#: Sync-state rows per chunk of our side.
STATE_CHUNK_ROWS = 20_000


class WarehouseSide:
    """What mogulflow synced into the data source, per entity: its `synced` sync-state entries, read
    chunk by chunk; the leads' dates from their source rows, held as arrays."""

    def __init__(self, warehouse: Warehouse, data_source_uuid: str) -> None:
        self.warehouse, self.data_source_uuid = warehouse, data_source_uuid
        self._lead_dates: SourceLeadDates | None = None

    def chunks(self, entity: Entity) -> Iterator[tuple[dict[str, FieldValues], list[str]]]:
        """The entity's synced rows, chunk by chunk, with the ids whose entry is settling."""
        frames = self.warehouse.iter_frames(
            f"SELECT external_id, status, payload FROM {STATE_TABLE} "
            "WHERE entity = :entity AND data_source_uuid = :data_source_uuid",
            {"entity": str(entity), "data_source_uuid": self.data_source_uuid},
            chunk_rows=STATE_CHUNK_ROWS,
        )
        settling_statuses = {str(status) for status in SETTLING}
        for frame in frames:
            statuses = frame["status"].to_numpy(dtype=object)
            ids = frame["external_id"].to_numpy(dtype=object)
            settling = [
                str(i) for i, status in zip(ids, statuses, strict=True) if status in settling_statuses
            ]
            synced = statuses == str(SyncStatus.SYNCED)
            payloads = {
                str(i): from_json_text(text) or {}
                for i, text in zip(ids[synced], frame["payload"].to_numpy(dtype=object)[synced], strict=True)
            }
            yield self._rows(entity, payloads), settling

    def values_of(self, entity: Entity, external_ids: Collection[str]) -> dict[str, FieldValues]:
        """The rows of these ids again (those that may differ from ChartMogul's)."""
        if not external_ids:
            return {}
        entries = load_state(self.warehouse, entity, self.data_source_uuid, external_ids)
        return self._rows(entity, {i: entry.payload or {} for i, entry in entries.items()})

    def _rows(self, entity: Entity, payloads: Mapping[str, Mapping[str, Any]]) -> dict[str, FieldValues]:
        if entity is Entity.LEAD:
            if self._lead_dates is None:
                self._lead_dates = source_lead_dates(self.warehouse, self.data_source_uuid)
            return _lead_rows(payloads, self._lead_dates.of(list(payloads)))
        names = COMPARED_FIELDS[entity]
        return {i: tuple(as_text(payload.get(name)) for name in names) for i, payload in payloads.items()}


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


@dataclass(frozen=True)
class SourceLeadDates:
    """Every source lead's `lead_created_at` and `free_trial_started_at`, as arrays (naive UTC
    datetime64, NaT when missing) aligned with the ids: a million leads in ~40 MiB."""

    leads: KnownIds
    created: np.ndarray
    trial_started: np.ndarray

    def of(self, lead_ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """(lead_created_at, free_trial_started_at) as text, for those of `lead_ids` in the source."""
        at = self.leads.positions(np.array(lead_ids, dtype=object))
        found = at >= 0
        texts = [_api_texts(dates[at[found]]) for dates in (self.created, self.trial_started)]
        chosen = [i for i, has in zip(lead_ids, found, strict=True) if has]
        return dict(zip(chosen, zip(*texts, strict=True), strict=True))


def _api_texts(moments: np.ndarray) -> list[str | None]:
    """Naive-UTC datetime64 values as `as_text` writes an instant (`YYYY-MM-DDTHH:MM:SSZ`), NaT as None."""
    texts = np.datetime_as_string(moments.astype("datetime64[s]"), unit="s")
    return [None if text == "NaT" else f"{text}Z" for text in texts.tolist()]


def source_lead_dates(warehouse: Warehouse, data_source_uuid: str) -> SourceLeadDates:
    """Every source lead's dates, read with the extract SQL, chunk by chunk.

    Of rows sharing an id, the one with the latest `updated_at` counts, as in a sync.
    """
    ids: list[np.ndarray] = []
    columns: dict[str, list[np.ndarray]] = {
        "lead_created_at": [],
        "free_trial_started_at": [],
        "updated_at": [],
    }
    for chunk in iter_entity_chunks(
        warehouse, Entity.LEAD, Window(None, None, full_refresh=True), data_source_uuid=data_source_uuid
    ):
        chunk = chunk.dropna(subset=["lead_id"])
        ids.append(as_id_array(chunk["lead_id"]))
        for name, parts in columns.items():
            # DuckDB hands out datetime64 columns, psycopg datetimes: one naive-UTC dtype for both
            moments = pd.to_datetime(chunk[name], utc=True).dt.tz_localize(None)
            parts.append(moments.to_numpy(dtype="datetime64[ns]"))
    lead_ids = np.concatenate(ids) if ids else as_id_array([])
    created, trial_started, updated = (
        np.concatenate(parts) if parts else np.array([], dtype="datetime64[ns]") for parts in columns.values()
    )
    # The latest `updated_at` per id wins (NaT, as int64's minimum, counts as the oldest; of equal
    # ones the later row): sort by id group, then `updated_at`, stably, and keep each group's last row.
    hashes = id_hashes(lead_ids)
    groups = group_ids(lead_ids, hashes)
    order = np.lexsort((updated.astype("int64"), groups))
    last = order[np.r_[groups[order][1:] != groups[order][:-1], True]] if len(order) else order
    leads, by_hash = KnownIds.indexing(lead_ids[last], hashes[last])
    return SourceLeadDates(leads, created[last][by_hash], trial_started[last][by_hash])


# ---- ChartMogul ------------------------------------------------------------------------------------

#: Listed rows handed to the comparison at once.
LISTED_BATCH = 1_000


@dataclass(frozen=True)
class ListedPage:
    """A batch of one entity's listed rows: the compared fields by external id, and (leads) the
    merged customers holding some of them."""

    rows: Mapping[str, FieldValues]
    merged: Mapping[str, str] = field(default_factory=dict)


def iter_chartmogul_pages(
    client: ChartMogulClient,
    data_source_uuid: str,
    on_customer: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[Entity, Iterator[ListedPage]]:
    """What the data source holds in ChartMogul, per entity, as lazily listed batches (reads only):
    each entity's listing can be consumed in a thread of its own. `on_customer` sees every listed
    customer, in the customers' thread (the attributes and tags are compared from the same pages)."""
    return {
        Entity.LEAD: _customer_pages(client, data_source_uuid, on_customer),
        Entity.PLAN: _batches(
            (
                str(plan["external_id"]),
                tuple(as_text(plan.get(name)) for name in COMPARED_FIELDS[Entity.PLAN]),
            )
            for plan in _in_source(client.iter_plans(data_source_uuid=data_source_uuid), data_source_uuid)
        ),
        Entity.TRIAL: _batches(
            (str(invoice["external_id"]), _trial_values(invoice))
            for invoice in _in_source(
                client.iter_invoices(data_source_uuid=data_source_uuid), data_source_uuid
            )
        ),
    }


def _trial_values(invoice: Mapping[str, Any]) -> FieldValues:
    line = trial_line_item(invoice)
    return (
        as_text(invoice.get("date")),
        as_text(line.get("service_period_end")),
        as_text(line.get("amount_in_cents")),
        as_text(invoice.get("currency")),
        as_text(line.get("quantity")),
    )


def _customer_pages(
    client: ChartMogulClient,
    data_source_uuid: str,
    on_customer: Callable[[Mapping[str, Any]], None] | None,
) -> Iterator[ListedPage]:
    rows: dict[str, FieldValues] = {}
    merged: dict[str, str] = {}
    for customer in client.iter_customers(data_source_uuid=data_source_uuid):
        if on_customer is not None:
            on_customer(customer)
        dates = (as_text(customer.get("lead_created_at")), as_text(customer.get("free_trial_started_at")))
        for external_id in external_ids_in(customer, data_source_uuid):
            rows[external_id] = dates
            if is_merged(customer):
                merged[external_id] = describe_customer(customer)
        if len(rows) >= LISTED_BATCH:
            yield ListedPage(rows, merged)
            rows, merged = {}, {}
    yield ListedPage(rows, merged)


def _batches(rows: Iterable[tuple[str, FieldValues]]) -> Iterator[ListedPage]:
    batch: dict[str, FieldValues] = {}
    for external_id, values in rows:
        batch[external_id] = values
        if len(batch) >= LISTED_BATCH:
            yield ListedPage(batch)
            batch = {}
    yield ListedPage(batch)


def _in_source(entries: Iterable[dict[str, Any]], data_source_uuid: str) -> Iterable[dict[str, Any]]:
    """Entries of this data source (a server that ignores the filter still lists only ours here)."""
    return (entry for entry in entries if entry.get("data_source_uuid") in (None, data_source_uuid))
