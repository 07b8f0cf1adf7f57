"""A reconciliation run: compare, record the differences and the run's account, mark for resend.

A reconciliation run: reconcile one data source, record the differences and the run's account,
and (with `resend`) mark what differs so that the next sync re-sends it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.data_sources import find_data_source
from mogulflow.failures import describe
from mogulflow.reconcile.attributes import mark_attributes_for_resend
from mogulflow.reconcile.compare import (
    Difference,
    DifferenceKind,
    EntityComparison,
    Reconciliation,
    reconcile,
)
from mogulflow.reconcile.sides import (
    RECONCILED,
)
from mogulflow.values.constants import RECONCILE_DAG_ID, RECONCILIATION_TABLE
from mogulflow.values.entities import OPTIONAL_ENTITIES, Entity, Window
from mogulflow.values.errors import SetupError
from mogulflow.values.run_summary import EntityCounts, RunOutcome, RunSummary
from mogulflow.warehouse.connection import Warehouse, naive_utc
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.run_records import record_run
from mogulflow.warehouse.sync_state import mark_for_resend

log = logging.getLogger(__name__)

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
    at = naive_utc(checked_at)
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
    for entity in OPTIONAL_ENTITIES:
        if entity in result.comparisons:
            marked[entity] = mark_attributes_for_resend(
                warehouse, entity, result.data_source_uuid, result.differences, run_id=run_id, at=at
            )
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
            details=details,
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
        details=details,
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
    if result.count(DifferenceKind.MERGED):
        message += (
            "; merged leads were merged with other records in ChartMogul, not by "
            "chartmogul_merge_converted_leads (chartmogul_value names the customer they are part of): the "
            "merge DAG counts one merged into its paying customer as done, one merged into another as failed"
        )
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
            "  %-5s warehouse %d, ChartMogul %d: agreeing %d, missing %d, extra %d, different %d, "
            "merged by ChartMogul %d (not compared: %d failed or merged by mogulflow)",
            entity,
            c.warehouse,
            c.chartmogul,
            c.agreeing,
            c.missing,
            c.extra,
            c.different,
            c.merged,
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
