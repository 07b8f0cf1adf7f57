"""Compare: does ChartMogul still hold what mogulflow synced? Count and compare both sides.

For one data source, the warehouse side (the sync state's synced leads, plans and trial invoices,
with the leads' dates from their source rows) is compared with what ChartMogul lists
(`mogulflow.reconcile.sides`):

- per month, how many leads (by `lead_created_at`) and trials (by invoice date) each side has;
- per external id, a `Difference`: `missing` in ChartMogul, `extra` in ChartMogul, `different`
  in one field (with both values), or `merged`: a lead mogulflow synced as a customer of its own that
  ChartMogul now holds merged with other records (its automatic merging of matching external ids or
  domains, or a person), with the customer it is part of as `chartmogul_value`.

The differences go to `mogulflow_reconciliation`, one row each, and the run's account (counts,
months) to `mogulflow_runs` under the dag id `chartmogul_reconcile`. With `resend`, the rows that
are missing or different are marked in the sync state so that the next sync re-sends them; extra
objects are only reported (mogulflow never deletes what it did not write).
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.reconcile.sides import (
    COMPARED_FIELDS,
    RECONCILED,
    EntitySide,
    read_chartmogul_side,
    read_warehouse_side,
)
from mogulflow.values.entities import Entity
from mogulflow.values.field_equality import same_value
from mogulflow.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

#: The month of a row without a date (a lead with no lead date at all).
NO_MONTH = "none"
#: The field each entity is counted by, per month (plans have no date: counted in total only).
MONTH_FIELDS: Mapping[Entity, str] = {Entity.LEAD: "lead_created_at", Entity.TRIAL: "date"}


class DifferenceKind(enum.StrEnum):
    """How a row differs; the value is what `mogulflow_reconciliation.kind` holds."""

    MISSING = "missing"  # synced by mogulflow, not in ChartMogul
    EXTRA = "extra"  # in ChartMogul's data source, not synced by mogulflow
    DIFFERENT = "different"  # in both, one field differs (one difference per field)
    MERGED = (
        "merged"  # a synced lead's customer now holds other records too: merged by ChartMogul or a person
    )


@dataclass(frozen=True)
class Difference:
    """One row of `mogulflow_reconciliation`: an id that ChartMogul and the warehouse disagree on."""

    entity: Entity
    external_id: str
    kind: DifferenceKind
    field: str | None = None  # for `different`
    warehouse_value: str | None = None
    chartmogul_value: str | None = None


@dataclass(frozen=True)
class MonthCount:
    """How many rows of one month each side has."""

    month: str  # YYYY-MM, or `NO_MONTH`
    warehouse: int
    chartmogul: int


@dataclass(frozen=True)
class EntityComparison:
    """One entity's totals: warehouse = agreeing + missing + different; chartmogul = agreeing +
    different + extra. `settling` rows (failed or merged in the sync state) are on neither side."""

    entity: Entity
    warehouse: int
    chartmogul: int
    agreeing: int
    missing: int
    extra: int
    different: int  # rows with at least one different field
    settling: int
    months: tuple[MonthCount, ...] = ()
    merged: int = 0  # synced leads ChartMogul holds merged with other records (compared all the same)

    @property
    def disagreeing(self) -> int:
        """Warehouse rows ChartMogul does not hold as synced: missing or different."""
        return self.missing + self.different


@dataclass(frozen=True)
class Reconciliation:
    """What comparing one data source found."""

    data_source_uuid: str
    comparisons: Mapping[Entity, EntityComparison]
    differences: tuple[Difference, ...]

    @property
    def in_agreement(self) -> bool:
        """Whether ChartMogul holds exactly what mogulflow synced."""
        return not self.differences

    def count(self, kind: DifferenceKind) -> int:
        """How many rows differ this way (a row `different` in two fields counts once)."""
        return len({(d.entity, d.external_id) for d in self.differences if d.kind is kind})


# ---- comparing --------------------------------------------------------------------------------------


def compare_entity(ours: EntitySide, theirs: EntitySide) -> tuple[EntityComparison, list[Difference]]:
    """Compare one entity's warehouse side with ChartMogul's, id by id and month by month."""
    entity = ours.entity
    names = COMPARED_FIELDS[entity]
    listed = {i: values for i, values in theirs.rows.items() if i not in ours.settling}
    differences: list[Difference] = []
    agreeing = different = missing = merged = 0
    for external_id in sorted(ours.rows):
        values = ours.rows[external_id]
        held = listed.get(external_id)
        if held is None:
            missing += 1
            differences.append(Difference(entity, external_id, DifferenceKind.MISSING))
            continue
        fields = [
            Difference(entity, external_id, DifferenceKind.DIFFERENT, name, mine, their)
            for name, mine, their in zip(names, values, held, strict=True)
            if not same_value(mine, their)
        ]
        differences.extend(fields)
        different += bool(fields)
        agreeing += not fields
        if external_id in theirs.merged:
            merged += 1
            differences.append(
                Difference(
                    entity, external_id, DifferenceKind.MERGED, chartmogul_value=theirs.merged[external_id]
                )
            )
    extra = sorted(set(listed) - set(ours.rows))
    differences.extend(Difference(entity, external_id, DifferenceKind.EXTRA) for external_id in extra)
    comparison = EntityComparison(
        entity=entity,
        warehouse=len(ours.rows),
        chartmogul=len(listed),
        agreeing=agreeing,
        missing=missing,
        extra=len(extra),
        different=different,
        settling=len(ours.settling),
        months=count_months(entity, ours.rows, listed),
        merged=merged,
    )
    return comparison, differences


def count_months(
    entity: Entity, ours: Mapping[str, Sequence[str | None]], theirs: Mapping[str, Sequence[str | None]]
) -> tuple[MonthCount, ...]:
    """Rows per month of the entity's date on each side (none for an entity without a date)."""
    name = MONTH_FIELDS.get(entity)
    if name is None:
        return ()
    position = COMPARED_FIELDS[entity].index(name)

    def months(rows: Mapping[str, Sequence[str | None]]) -> Counter[str]:
        return Counter((values[position] or NO_MONTH)[:7] for values in rows.values())

    mine, their = months(ours), months(theirs)
    ordered = sorted(set(mine) | set(their), key=lambda month: (month == NO_MONTH, month))
    return tuple(MonthCount(month, mine[month], their[month]) for month in ordered)


def reconcile(warehouse: Warehouse, client: ChartMogulClient, data_source_uuid: str) -> Reconciliation:
    """Compare what mogulflow synced into the data source with what ChartMogul lists there."""
    # Attributes and tags compare what mogulflow owns, from the same customer pages (imported here:
    # that module builds the values of this one).
    from mogulflow.reconcile.attributes import HeldByCustomers, compare_owned, read_known

    ours = read_warehouse_side(warehouse, data_source_uuid)
    known = {entity: side for entity, side in read_known(warehouse, data_source_uuid).items() if side.in_use}
    held = HeldByCustomers(data_source_uuid, known)
    theirs = read_chartmogul_side(client, data_source_uuid, on_customer=held.add if known else None)
    comparisons: dict[Entity, EntityComparison] = {}
    differences: list[Difference] = []
    for entity in RECONCILED:
        comparisons[entity], found = compare_entity(ours[entity], theirs[entity])
        differences.extend(found)
    for entity, side in known.items():
        comparisons[entity], found = compare_owned(side, held.held[entity])
        differences.extend(found)
    return Reconciliation(data_source_uuid, comparisons, tuple(differences))


# ---- recording and re-sending -----------------------------------------------------------------------


# ---- the whole step ---------------------------------------------------------------------------------
