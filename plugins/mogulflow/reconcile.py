"""Reconcile: does ChartMogul still hold what mogulflow synced? Count, compare, record; never write to it.

For one data source, the warehouse side (the sync state's synced leads, plans and trial invoices,
with the leads' dates from their source rows) is compared with what ChartMogul lists
(`mogulflow.reconcile_sides`):

- per month, how many leads (by `lead_created_at`) and trials (by invoice date) each side has;
- per external id, a `Difference`: `missing` in ChartMogul, `extra` in ChartMogul, or `different`
  in one field (with both values).

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
from dataclasses import field as dataclass_field
from datetime import UTC, datetime

from mogulflow.api.client import ChartMogulClient
from mogulflow.data_sources import find_data_source
from mogulflow.failures import describe
from mogulflow.fields import same_value
from mogulflow.model import Entity, EntityCounts, RunOutcome, RunSummary, SetupError, Window
from mogulflow.reconcile_sides import (
    COMPARED_FIELDS,
    RECONCILED,
    EntitySide,
    read_chartmogul_side,
    read_warehouse_side,
)
from mogulflow.record import ensure_tables, record_run
from mogulflow.state import mark_for_resend
from mogulflow.warehouse import Warehouse
from mogulflow.xcom import to_xcom

log = logging.getLogger(__name__)

RECONCILIATION_TABLE = "mogulflow_reconciliation"
#: The dag id of every reconciliation's account in `mogulflow_runs`, whichever DAG ran it.
RECONCILE_DAG_ID = "chartmogul_reconcile"
#: The month of a row without a date (a lead with no lead date at all).
NO_MONTH = "none"
#: The field each entity is counted by, per month (plans have no date: counted in total only).
MONTH_FIELDS: Mapping[Entity, str] = {Entity.LEAD: "lead_created_at", Entity.TRIAL: "date"}
#: How many example ids per kind of difference the run's details keep (the table has them all).
EXAMPLES_KEPT = 5

_COLUMNS = (
    "run_id",
    "dag_id",
    "data_source_uuid",
    "entity",
    "external_id",
    "kind",
    "field",
    "warehouse_value",
    "chartmogul_value",
    "checked_at",
)


class DifferenceKind(enum.StrEnum):
    """How a row differs; the value is what `mogulflow_reconciliation.kind` holds."""

    MISSING = "missing"  # synced by mogulflow, not in ChartMogul
    EXTRA = "extra"  # in ChartMogul's data source, not synced by mogulflow
    DIFFERENT = "different"  # in both, one field differs (one difference per field)


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
    agreeing = different = missing = 0
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
    ours = read_warehouse_side(warehouse, data_source_uuid)
    theirs = read_chartmogul_side(client, data_source_uuid)
    comparisons: dict[Entity, EntityComparison] = {}
    differences: list[Difference] = []
    for entity in RECONCILED:
        comparisons[entity], found = compare_entity(ours[entity], theirs[entity])
        differences.extend(found)
    return Reconciliation(data_source_uuid, comparisons, tuple(differences))


# ---- recording and re-sending -----------------------------------------------------------------------


def record_differences(
    warehouse: Warehouse, result: Reconciliation, *, run_id: str, dag_id: str, checked_at: datetime
) -> int:
    """Write one `mogulflow_reconciliation` row per difference, replacing an earlier attempt of the run."""
    ensure_tables(warehouse)
    warehouse.execute(
        f"DELETE FROM {RECONCILIATION_TABLE} WHERE run_id = :run_id AND dag_id = :dag_id "
        "AND data_source_uuid = :data_source_uuid",
        {"run_id": run_id, "dag_id": dag_id, "data_source_uuid": result.data_source_uuid},
    )
    at = checked_at.astimezone(UTC).replace(tzinfo=None)
    rows = [
        (
            run_id,
            dag_id,
            result.data_source_uuid,
            str(d.entity),
            d.external_id,
            str(d.kind),
            d.field,
            d.warehouse_value,
            d.chartmogul_value,
            at,
        )
        for d in result.differences
    ]
    warehouse.insert_rows(RECONCILIATION_TABLE, _COLUMNS, rows)
    return len(rows)


def resend_differences(
    warehouse: Warehouse, result: Reconciliation, *, run_id: str, at: datetime
) -> dict[Entity, int]:
    """Mark the missing and different rows so that the next sync re-sends them; per entity, how many."""
    marked: dict[Entity, int] = {}
    for entity in RECONCILED:
        of_entity = [d for d in result.differences if d.entity is entity]
        marked[entity] = mark_for_resend(
            warehouse,
            entity,
            result.data_source_uuid,
            different={d.external_id for d in of_entity if d.kind is DifferenceKind.DIFFERENT},
            missing={d.external_id for d in of_entity if d.kind is DifferenceKind.MISSING},
            run_id=run_id,
            at=at,
        )
    return marked


# ---- the whole step ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileRequest:
    """What one reconciliation run was asked to do."""

    run_id: str
    dag_id: str  # the Airflow DAG running it: chartmogul_reconcile, or chartmogul_leads_trials
    data_source_name: str
    resend: bool
    started_at: datetime


@dataclass(frozen=True)
class ReconcileDetails:
    """What the run's row in `mogulflow_runs` keeps beyond the counts (its `details`, as JSON)."""

    dag_id: str
    resend: bool
    entities: Mapping[Entity, EntityComparison] = dataclass_field(default_factory=dict)
    examples: Mapping[DifferenceKind, tuple[str, ...]] = dataclass_field(default_factory=dict)  # "entity:id"
    resent: Mapping[Entity, int] = dataclass_field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ReconcileReport:
    """What a reconciliation run hands back (the task's XCom)."""

    outcome: RunOutcome
    message: str
    data_source_uuid: str
    differences: Mapping[DifferenceKind, int]
    resent: Mapping[Entity, int]


def run_reconciliation(
    warehouse: Warehouse, client: ChartMogulClient, request: ReconcileRequest
) -> ReconcileReport:
    """Reconcile the named data source, record the differences and the run, re-send if asked.

    Drift is data: the run ends with outcome `failed` in `mogulflow_runs` when ChartMogul and the
    warehouse disagree, but returns normally. Only a reconciliation that could not finish (the API
    or the warehouse failing) raises, after recording its failed run.
    """
    ensure_tables(warehouse)
    data_source_uuid: str | None = None
    try:
        data_source_uuid = find_data_source(client, request.data_source_name)
        if data_source_uuid is None:
            raise SetupError(
                f"ChartMogul has no data source named {request.data_source_name!r}: nothing was synced "
                "there. Run chartmogul_leads_trials first, or set data_source_name."
            )
        result = reconcile(warehouse, client, data_source_uuid)
    except Exception as error:
        details = ReconcileDetails(request.dag_id, request.resend, error=describe(error))
        summary = _summary(
            request, RunOutcome.FAILED, f"reconciliation did not finish: {describe(error)}", {}
        )
        record_run(
            warehouse,
            summary,
            details=to_xcom(details),
            data_source=(request.data_source_name, data_source_uuid),
        )
        raise
    checked_at = datetime.now(UTC)
    record_differences(warehouse, result, run_id=request.run_id, dag_id=request.dag_id, checked_at=checked_at)
    resent = (
        resend_differences(warehouse, result, run_id=request.run_id, at=checked_at) if request.resend else {}
    )
    outcome = RunOutcome.SUCCESS if result.in_agreement else RunOutcome.FAILED
    message = describe_result(result, request, resent)
    counts = {
        entity: EntityCounts(extracted=c.warehouse, unchanged=c.agreeing, failed=c.disagreeing)
        for entity, c in result.comparisons.items()
    }
    details = ReconcileDetails(
        request.dag_id, request.resend, result.comparisons, _examples(result.differences), resent
    )
    record_run(
        warehouse,
        _summary(request, outcome, message, counts),
        details=to_xcom(details),
        data_source=(request.data_source_name, data_source_uuid),
    )
    _log(result, message)
    return ReconcileReport(
        outcome, message, data_source_uuid, {kind: result.count(kind) for kind in DifferenceKind}, resent
    )


def describe_result(result: Reconciliation, request: ReconcileRequest, resent: Mapping[Entity, int]) -> str:
    """The run's message: agreement, or what differs and what to do about it."""
    compared = ", ".join(f"{c.warehouse} {entity}s" for entity, c in result.comparisons.items())
    if result.in_agreement:
        return f"ChartMogul agrees with the warehouse ({compared})"
    kinds = ", ".join(f"{result.count(kind)} {kind}" for kind in DifferenceKind if result.count(kind))
    message = f"ChartMogul differs from the warehouse: {kinds} (see {RECONCILIATION_TABLE})"
    fixable = result.count(DifferenceKind.MISSING) + result.count(DifferenceKind.DIFFERENT)
    if request.resend:
        message += (
            f"; {sum(resent.values())} rows marked to be re-sent by the next chartmogul_leads_trials run"
        )
    elif fixable:
        message += f"; run chartmogul_reconcile with resend=true to re-send the {fixable} rows that differ"
    if result.count(DifferenceKind.EXTRA):
        message += "; extra objects are not mogulflow's: remove them in ChartMogul if they are mistakes"
    return message


def _summary(
    request: ReconcileRequest, outcome: RunOutcome, message: str, counts: Mapping[Entity, EntityCounts]
) -> RunSummary:
    return RunSummary(
        run_id=request.run_id,
        dag_id=RECONCILE_DAG_ID,
        window=Window(None, None, full_refresh=True),  # every synced row is compared
        started_at=request.started_at,
        finished_at=datetime.now(UTC),
        dry_run=False,
        outcome=outcome,
        counts=counts,
        message=message,
    )


def _examples(differences: Sequence[Difference]) -> dict[DifferenceKind, tuple[str, ...]]:
    examples: dict[DifferenceKind, list[str]] = {}
    for d in differences:
        kept = examples.setdefault(d.kind, [])
        label = f"{d.entity}:{d.external_id}"
        if len(kept) < EXAMPLES_KEPT and label not in kept:
            kept.append(label)
    return {kind: tuple(ids) for kind, ids in examples.items()}


def _log(result: Reconciliation, message: str) -> None:
    level = logging.INFO if result.in_agreement else logging.WARNING
    log.log(level, "Reconciliation of data source %s: %s", result.data_source_uuid, message)
    for entity, c in result.comparisons.items():
        log.log(
            level,
            "  %-5s warehouse %d, ChartMogul %d: agreeing %d, missing %d, extra %d, different %d "
            "(not compared: %d failed or merged)",
            entity,
            c.warehouse,
            c.chartmogul,
            c.agreeing,
            c.missing,
            c.extra,
            c.different,
            c.settling,
        )
        for month in c.months:
            if month.warehouse != month.chartmogul:
                log.log(
                    level,
                    "    %s: warehouse %d, ChartMogul %d",
                    month.month,
                    month.warehouse,
                    month.chartmogul,
                )
