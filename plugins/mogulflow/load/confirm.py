"""Confirm: what ChartMogul holds under some external ids now, read before a write acts on them.

A uuid the sync state remembers can be stale: the object was deleted and made again (another uuid),
merged into another customer (its uuid gone), or merged with another record (its uuid now stands for
two). So before a PATCH or a merge, mogulflow reads what the data source holds under each external
id and acts on that, never on the remembered uuid alone.

Two ways to read, whichever costs less: one lookup per external id (`GET ...?data_source_uuid=&
external_id=`, up to `max_workers` at a time, within the client's pace), or one listing of the whole
data source (200 objects a page, pages one after another: the cursor chains them). A page costs
about `LISTING_PAGE_COST` paced lookups of time, so the listing is chosen when the data source's
pages, at that price, are no more than the ids to confirm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mogulflow.chartmogul.client import MAX_PER_PAGE, ChartMogulClient
from mogulflow.chartmogul.shapes import external_ids_in
from mogulflow.load.writes import LOAD_STOPPERS
from mogulflow.values.entities import Entity

log = logging.getLogger(__name__)

#: A listing page's time in paced lookups: one request, but its 200 objects take longer to answer,
#: and pages cannot overlap (each needs the cursor of the one before), while lookups run side by side.
LISTING_PAGE_COST = 4

Entry = dict[str, Any]


@dataclass(frozen=True)
class HeldObjects:
    """What ChartMogul holds now under the external ids asked about.

    An id in `found` is held (by that object); in `unknown`, it could not be read (the write that needed
    it fails with that reason); in neither, ChartMogul holds nothing under it.
    """

    found: Mapping[str, Entry] = field(default_factory=dict)
    unknown: Mapping[str, Exception] = field(default_factory=dict)
    listed: bool = False  # read by listing the data source rather than one lookup per id

    def get(self, external_id: str) -> Entry | None:
        """The object held under the external id, or None."""
        return self.found.get(external_id)


def listing_is_cheaper(wanted: int, known_size: int) -> bool:
    """Whether listing a data source of about `known_size` objects beats `wanted` lookups."""
    pages = known_size // MAX_PER_PAGE + 1
    return pages * LISTING_PAGE_COST <= wanted


def read_held(
    client: ChartMogulClient,
    entity: Entity,
    data_source_uuid: str,
    external_ids: Iterable[str],
    *,
    known_size: int,
    max_workers: int = 4,
) -> HeldObjects:
    """What the data source holds under each external id (customers, plans or trial invoices).

    `known_size`: about how many objects of the entity the data source holds (the sync state's
    count), which decides between a listing and lookups.
    """
    wanted = sorted(set(external_ids))
    if not wanted:
        return HeldObjects()
    if listing_is_cheaper(len(wanted), known_size):
        log.info("Confirming %d %s rows with one listing of the data source.", len(wanted), entity)
        return list_held(client, entity, data_source_uuid, wanted)
    log.info("Confirming %d %s rows with one lookup each.", len(wanted), entity)
    return _looked_up(client, entity, data_source_uuid, wanted, max_workers)


def list_held(
    client: ChartMogulClient, entity: Entity, data_source_uuid: str, wanted: Collection[str]
) -> HeldObjects:
    """What the data source holds under the wanted external ids, from one listing of it (every page)."""
    wanted = set(wanted)
    found: dict[str, Entry] = {}
    try:
        for entry in _listing(client, entity, data_source_uuid):
            for external_id in _external_ids(entity, entry, data_source_uuid):
                if external_id in wanted:
                    found[external_id] = entry
    except LOAD_STOPPERS:
        raise
    except Exception as error:  # the listing broke off: what it did not reach is unknown, not absent
        return HeldObjects(found, {i: error for i in wanted if i not in found}, listed=True)
    return HeldObjects(found, listed=True)


def _looked_up(
    client: ChartMogulClient, entity: Entity, data_source_uuid: str, wanted: list[str], max_workers: int
) -> HeldObjects:
    finder = _finder(client, entity)

    def look(external_id: str) -> Entry | Exception | None:
        try:
            return finder(data_source_uuid, external_id)
        except LOAD_STOPPERS:
            raise
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix=f"confirm-{entity}") as pool:
        answers = list(pool.map(look, wanted))
    found = {i: a for i, a in zip(wanted, answers, strict=True) if isinstance(a, dict)}
    unknown = {i: a for i, a in zip(wanted, answers, strict=True) if isinstance(a, Exception)}
    return HeldObjects(found, unknown)


def _finder(client: ChartMogulClient, entity: Entity) -> Callable[[str, str], Entry | None]:
    if entity is Entity.PLAN:
        return client.find_plan
    if entity is Entity.TRIAL:
        return client.find_invoice
    return client.find_customer


def _listing(client: ChartMogulClient, entity: Entity, data_source_uuid: str) -> Iterable[Entry]:
    if entity is Entity.PLAN:
        return client.iter_plans(data_source_uuid=data_source_uuid)
    if entity is Entity.TRIAL:
        return client.iter_invoices(data_source_uuid=data_source_uuid)
    return client.iter_customers(data_source_uuid=data_source_uuid)


def _external_ids(entity: Entity, entry: Mapping[str, Any], data_source_uuid: str) -> list[str]:
    """The external ids a listed object answers for in this data source (a merged customer: several)."""
    if entity is Entity.LEAD:
        return external_ids_in(entry, data_source_uuid)
    if entry.get("data_source_uuid") not in (None, data_source_uuid) or entry.get("external_id") is None:
        return []
    return [str(entry["external_id"])]
