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
import functools
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.reconcile.sides import (
    COMPARED_FIELDS,
    RECONCILED,
    EntitySide,
    FieldValues,
    ListedPage,
    WarehouseSide,
    iter_chartmogul_pages,
)
from mogulflow.values.entities import Entity
from mogulflow.values.field_equality import same_value
from mogulflow.values.id_arrays import KnownIds, as_id_array, id_hashes
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


def row_digests(rows: Sequence[FieldValues]) -> np.ndarray:
    """A 128-bit digest of each row's compared texts (two uint64 columns): equal texts, equal digests."""
    joined = np.array(
        ["\x1f".join("\x00" if v is None else v for v in values) for values in rows], dtype=object
    )
    if not len(joined):
        return np.empty((0, 2), dtype=np.uint64)
    return np.column_stack(
        [pd.util.hash_array(joined, hash_key=key, categorize=False) for key in _DIGEST_KEYS]
    )


_DIGEST_KEYS = ("0123456789123456", "mogulflowreconc1")


class EntityComparer:
    """One entity's comparison, fed chunk by chunk: what a reconciliation of a million rows holds.

    Our rows go in first (`add_ours`) and are kept as arrays: their ids, a digest of their fields and
    their month. ChartMogul's rows then stream through (`add_theirs`, one listing page at a time):
    an id whose digest matches ours agrees at once and is forgotten; only the others keep their
    values. `finish` compares those field by field against our values, read again for just their
    ids: the same differences, in the same order, as comparing both sides whole.
    """

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self._month_at = (
            COMPARED_FIELDS[entity].index(MONTH_FIELDS[entity]) if entity in MONTH_FIELDS else None
        )
        self._our_ids: list[np.ndarray] = []
        self._our_digests: list[np.ndarray] = []
        self.settling: set[str] = set()
        self.months: dict[str, Counter[str]] = {"ours": Counter(), "theirs": Counter()}
        self._ours: KnownIds | None = None
        self._digests = np.empty((0, 2), dtype=np.uint64)
        self._seen = np.empty(0, dtype=bool)
        self.listed = 0
        self.held: dict[str, FieldValues] = {}  # ChartMogul's values of rows that may differ
        self.extra: list[str] = []
        self.merged: dict[str, str] = {}

    def add_ours(self, rows: Mapping[str, FieldValues], settling: Iterable[str] = ()) -> None:
        """A chunk of our rows (synced entries), and ids settling in the sync state."""
        self.settling.update(settling)
        ids = list(rows)
        self._our_ids.append(as_id_array(np.array(ids, dtype=object)))
        self._our_digests.append(row_digests(list(rows.values())))
        self._count_months("ours", rows.values())

    def _index_ours(self) -> KnownIds:
        if self._ours is None:
            ids = np.concatenate(self._our_ids) if self._our_ids else as_id_array([])
            digests = np.concatenate(self._our_digests) if self._our_digests else self._digests
            self._ours, order = KnownIds.indexing(ids, id_hashes(ids))
            self._digests = digests[order]
            self._seen = np.zeros(len(ids), dtype=bool)
            self._our_ids, self._our_digests = [], []
        return self._ours

    def add_theirs(self, rows: Mapping[str, FieldValues], merged: Mapping[str, str] | None = None) -> None:
        """A page of ChartMogul's rows (and, for leads, which of them a merged customer holds)."""
        ours = self._index_ours()
        listed = {i: values for i, values in rows.items() if i not in self.settling}
        if not listed:
            return
        self.listed += len(listed)
        self._count_months("theirs", listed.values())
        self.merged.update({i: of for i, of in (merged or {}).items() if i in listed})
        ids = list(listed)
        at = ours.positions(np.array(ids, dtype=object))
        digests = row_digests(list(listed.values()))
        known = at >= 0
        self._seen[at[known]] = True
        same = np.zeros(len(ids), dtype=bool)
        same[known] = (self._digests[at[known]] == digests[known]).all(axis=1)
        for i, external_id in enumerate(ids):
            if not known[i]:
                self.extra.append(external_id)
            elif not same[i]:
                self.held[external_id] = listed[external_id]

    def _count_months(self, side: str, rows: Iterable[FieldValues]) -> None:
        if self._month_at is not None:
            self.months[side].update((values[self._month_at] or NO_MONTH)[:7] for values in rows)

    def finish(
        self, our_values: Callable[[Collection[str]], Mapping[str, FieldValues]]
    ) -> tuple[EntityComparison, list[Difference]]:
        """The comparison and its differences; `our_values` reads our rows of some ids again."""
        ours = self._index_ours()
        entity, names = self.entity, COMPARED_FIELDS[self.entity]
        missing = ours.ids[~self._seen].tolist()
        mine = our_values(list(self.held))
        by_id: dict[str, list[Difference]] = {
            i: [Difference(entity, i, DifferenceKind.MISSING)] for i in missing
        }
        different = 0
        for external_id, held in self.held.items():
            fields = [
                Difference(entity, external_id, DifferenceKind.DIFFERENT, name, value, their)
                for name, value, their in zip(names, mine[external_id], held, strict=True)
                if not same_value(value, their)
            ]
            different += bool(fields)
            if fields:
                by_id[external_id] = fields
        for external_id, customer in self.merged.items():
            if external_id in ours:
                by_id.setdefault(external_id, []).append(
                    Difference(entity, external_id, DifferenceKind.MERGED, chartmogul_value=customer)
                )
        differences = [d for external_id in sorted(by_id) for d in by_id[external_id]]
        extra = sorted(self.extra)
        differences.extend(Difference(entity, external_id, DifferenceKind.EXTRA) for external_id in extra)
        mine_months, their_months = self.months["ours"], self.months["theirs"]
        ordered = sorted(set(mine_months) | set(their_months), key=lambda month: (month == NO_MONTH, month))
        comparison = EntityComparison(
            entity=entity,
            warehouse=len(ours),
            chartmogul=self.listed,
            agreeing=int(self._seen.sum()) - different,
            missing=len(missing),
            extra=len(extra),
            different=different,
            settling=len(self.settling),
            months=tuple(MonthCount(m, mine_months[m], their_months[m]) for m in ordered)
            if self._month_at is not None
            else (),
            merged=sum(1 for external_id in self.merged if external_id in ours),
        )
        return comparison, differences


def compare_entity(ours: EntitySide, theirs: EntitySide) -> tuple[EntityComparison, list[Difference]]:
    """Compare one entity's warehouse side with ChartMogul's, id by id and month by month."""
    comparer = EntityComparer(ours.entity)
    comparer.add_ours(ours.rows, ours.settling)
    comparer.add_theirs(theirs.rows, theirs.merged)
    return comparer.finish(lambda ids: {i: ours.rows[i] for i in ids})


def reconcile(warehouse: Warehouse, client: ChartMogulClient, data_source_uuid: str) -> Reconciliation:
    """Compare what mogulflow synced into the data source with what ChartMogul lists there.

    Our side is read in chunks into each entity's `EntityComparer`; ChartMogul's customers, plans and
    invoices are then listed side by side (three listings in parallel, within the client's pace),
    each page compared as it arrives.
    """
    # Attributes and tags compare what mogulflow owns, from the same customer pages (imported here:
    # that module builds the values of this one).
    from mogulflow.reconcile.attributes import HeldByCustomers, compare_owned, read_known

    ours = WarehouseSide(warehouse, data_source_uuid)
    known = {entity: side for entity, side in read_known(warehouse, data_source_uuid).items() if side.in_use}
    held = HeldByCustomers(data_source_uuid, known)
    on_customer = held.add if known else None
    comparers = {entity: EntityComparer(entity) for entity in RECONCILED}
    for entity in RECONCILED:
        for rows, settling in ours.chunks(entity):
            comparers[entity].add_ours(rows, settling)
        warehouse.release_cached_blocks()  # a million payloads were read once: not worth caching
    with ThreadPoolExecutor(max_workers=len(RECONCILED), thread_name_prefix="reconcile-list") as pool:
        listings = [
            pool.submit(_feed, comparers[entity], pages)
            for entity, pages in iter_chartmogul_pages(client, data_source_uuid, on_customer).items()
        ]
        for listing in listings:
            listing.result()
    comparisons: dict[Entity, EntityComparison] = {}
    differences: list[Difference] = []
    for entity in RECONCILED:
        comparisons[entity], found = comparers[entity].finish(functools.partial(ours.values_of, entity))
        differences.extend(found)
    for entity, side in known.items():
        comparisons[entity], found = compare_owned(side, held.held[entity])
        differences.extend(found)
    return Reconciliation(data_source_uuid, comparisons, tuple(differences))


def _feed(comparer: EntityComparer, pages: Iterable[ListedPage]) -> None:
    for page in pages:
        comparer.add_theirs(page.rows, page.merged)


# ---- recording and re-sending -----------------------------------------------------------------------


# ---- the whole step ---------------------------------------------------------------------------------
