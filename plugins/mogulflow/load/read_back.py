"""Read back: after JSON imports, one listing per entity gives each record its uuid and proves it is there.

JSON imports answer without uuids, so the listing of the data source gives each record its uuid (a
later change then needs no lookup); a record an import reported as imported that the listing does
not show was not written, whatever the import said.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.load.confirm import list_held
from mogulflow.warehouse.sync_state import StateEntry


@dataclass(frozen=True)
class ReadBack:
    """The entries the listing shows (with their uuids), and those it does not show."""

    found: list[StateEntry] = field(default_factory=list)
    absent: list[StateEntry] = field(default_factory=list)


def read_back(client: ChartMogulClient, data_source_uuid: str, entries: Sequence[StateEntry]) -> ReadBack:
    """The entries (all of one entity) with the uuids one listing of the data source gives them.

    An entry the listing could not reach (it broke off) is in neither list: nothing is known of it.
    """
    if not entries:
        return ReadBack()
    by_id = {entry.external_id: entry for entry in entries}
    held = list_held(client, entries[0].entity, data_source_uuid, by_id)
    found = [
        dataclasses.replace(entry, chartmogul_uuid=str(held.found[external_id]["uuid"]))
        for external_id, entry in by_id.items()
        if external_id in held.found
    ]
    absent = [
        entry
        for external_id, entry in by_id.items()
        if external_id not in held.found and external_id not in held.unknown
    ]
    return ReadBack(found, absent)


def read_back_uuids(
    client: ChartMogulClient, data_source_uuid: str, entries: Sequence[StateEntry]
) -> list[StateEntry]:
    """The entries (all of one entity) that the listing shows, with their uuids."""
    return read_back(client, data_source_uuid, entries).found


def read_back_each(
    client: ChartMogulClient, data_source_uuid: str, entries: Sequence[StateEntry]
) -> ReadBack:
    """`read_back` of entries of several entities, one listing per entity, side by side."""
    by_entity: dict[object, list[StateEntry]] = {}
    for entry in entries:
        by_entity.setdefault(entry.entity, []).append(entry)
    if not by_entity:
        return ReadBack()
    with ThreadPoolExecutor(max_workers=len(by_entity), thread_name_prefix="uuid-read-back") as pool:
        futures = [pool.submit(read_back, client, data_source_uuid, group) for group in by_entity.values()]
        answers = [future.result() for future in futures]
    return ReadBack(
        [entry for answer in answers for entry in answer.found],
        [entry for answer in answers for entry in answer.absent],
    )
