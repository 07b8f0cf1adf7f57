"""Reconcile attributes and tags: does each customer still hold the keys and tags mogulflow owns?

Only what mogulflow knows of is compared (a key or tag someone else set is never its business):

- `missing`: a key (tag) mogulflow set that the customer no longer holds;
- `different`: a key mogulflow set that holds another value (both values recorded);
- `extra`: a key (tag) mogulflow removed that the customer holds again.

Each difference names the lead (`external_id`) and the key or tag (`field`). ChartMogul's side comes
from the same customer listing the leads are compared with (no request of its own). With `resend`,
`mark_attributes_for_resend` makes the next sync set (or remove) them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mogulflow.chartmogul.shapes import external_ids_in
from mogulflow.reconcile.compare import Difference, DifferenceKind, EntityComparison
from mogulflow.reconcile.sides import as_text
from mogulflow.values.entities import OPTIONAL_ENTITIES, Entity
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.sync_state import SyncStatus, load_state, save_state

#: (lead_id, key or tag)
Owned = tuple[str, str]


@dataclass(frozen=True)
class KnownSide:
    """What mogulflow knows of one entity in one data source: what it set, what it removed."""

    entity: Entity
    owned: Mapping[Owned, str | None]  # value as text (a tag: "true")
    removed: frozenset[Owned]
    settling: frozenset[Owned]  # failed entries: the next sync re-sends them anyway

    @property
    def in_use(self) -> bool:
        """Whether mogulflow ever synced this entity into the data source."""
        return bool(self.owned or self.removed or self.settling)


def read_known(warehouse: Warehouse, data_source_uuid: str) -> dict[Entity, KnownSide]:
    """The attribute and tag entries of the sync state (none when the feature never ran)."""
    sides = {}
    for entity in OPTIONAL_ENTITIES:
        owned: dict[Owned, str | None] = {}
        removed: set[Owned] = set()
        settling: set[Owned] = set()
        for entry in load_state(warehouse, entity, data_source_uuid).values():
            payload = entry.payload
            if not payload or "lead_id" not in payload or payload.get("theirs"):
                continue  # a waiting mark, or a key someone else holds
            name = _name(payload)
            if entry.status is SyncStatus.FAILED:
                settling.add(name)
            elif payload.get("value") is not None or payload.get("present"):
                owned[name] = "true" if "tag" in payload else as_text(payload.get("value"))
            else:
                removed.add(name)
        sides[entity] = KnownSide(entity, owned, frozenset(removed), frozenset(settling))
    return sides


class HeldByCustomers:
    """What the listed customers hold, for the leads mogulflow knows of: custom attributes and tags by
    (lead_id, key or tag). Fed one listed customer at a time (`add`)."""

    def __init__(self, data_source_uuid: str, known: Mapping[Entity, KnownSide]) -> None:
        self.data_source_uuid = data_source_uuid
        self.leads = {lead for side in known.values() for lead, _ in (*side.owned, *side.removed)}
        self.held: dict[Entity, dict[Owned, str | None]] = {entity: {} for entity in OPTIONAL_ENTITIES}

    def add(self, customer: Mapping[str, Any]) -> None:
        attributes = customer.get("attributes") or {}
        for lead_id in external_ids_in(customer, self.data_source_uuid):
            if lead_id not in self.leads:
                continue
            for key, value in (attributes.get("custom") or {}).items():
                self.held[Entity.ATTRIBUTE][(lead_id, str(key))] = as_text(value)
            for tag in attributes.get("tags") or []:
                self.held[Entity.TAG][(lead_id, str(tag))] = "true"


def compare_owned(
    known: KnownSide, held: Mapping[Owned, str | None]
) -> tuple[EntityComparison, list[Difference]]:
    """Compare what mogulflow owns (and removed) with what the customers hold."""
    entity = known.entity
    differences: list[Difference] = []
    agreeing = missing = different = 0
    for (lead_id, name), mine in sorted(known.owned.items()):
        if (lead_id, name) not in held:
            missing += 1
            differences.append(Difference(entity, lead_id, DifferenceKind.MISSING, name, mine, None))
        elif not _same(mine, held[(lead_id, name)]):
            different += 1
            theirs = held[(lead_id, name)]
            differences.append(Difference(entity, lead_id, DifferenceKind.DIFFERENT, name, mine, theirs))
        else:
            agreeing += 1
    extra = sorted(name for name in known.removed if name in held)
    differences.extend(
        Difference(entity, lead_id, DifferenceKind.EXTRA, key, None, held[(lead_id, key)])
        for lead_id, key in extra
    )
    comparison = EntityComparison(
        entity=entity,
        warehouse=len(known.owned),
        chartmogul=agreeing + different + len(extra),
        agreeing=agreeing,
        missing=missing,
        extra=len(extra),
        different=different,
        settling=len(known.settling),
    )
    return comparison, differences


def mark_attributes_for_resend(
    warehouse: Warehouse,
    entity: Entity,
    data_source_uuid: str,
    differences: Iterable[Difference],
    *,
    run_id: str,
    at: datetime,
) -> int:
    """Make the next sync re-send the differing keys (tags): their entries become `failed`, so that the
    extract reads their rows again. A missing one is added again (mogulflow still owns it); an extra one
    is owned again with ChartMogul's value, so that the warehouse's removal is sent again."""
    wanted = {f"{d.external_id}/{d.field}": d for d in differences if d.entity is entity}
    if not wanted:
        return 0
    marked = []
    for external_id, entry in load_state(warehouse, entity, data_source_uuid).items():
        difference = wanted.get(external_id)
        if difference is None or entry.status is not SyncStatus.SYNCED or not entry.payload:
            continue
        payload = dict(entry.payload)
        if difference.kind is DifferenceKind.EXTRA:
            if entity is Entity.TAG:
                payload["present"] = True
            else:
                payload["value"] = difference.chartmogul_value
        missing = difference.kind is DifferenceKind.MISSING
        marked.append(
            replace(
                entry,
                status=SyncStatus.FAILED,
                content_hash=None,
                payload=payload,
                chartmogul_uuid=None if missing else entry.chartmogul_uuid,
                run_id=run_id,
                synced_at=at,
            )
        )
    if marked:
        save_state(warehouse, marked)
    return len(marked)


def _name(payload: Mapping[str, Any]) -> Owned:
    return (str(payload["lead_id"]), str(payload.get("tag", payload.get("key"))))


def _same(mine: str | None, theirs: str | None) -> bool:
    """Equal as the reconciliation writes values; numbers compare as numbers (12 and 12.0)."""
    if mine == theirs:
        return True
    try:
        return mine is not None and theirs is not None and float(mine) == float(theirs)
    except ValueError:
        return False
