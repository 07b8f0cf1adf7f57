"""Deletions: the warehouse side of deletes: the erasure requests, a run's planned (approved) set, the
audit of every delete, and the fact of each erasure.

`lead_erasures` is the user's table (optional); `mogulflow_delete_plan`, `mogulflow_deletions` and
`mogulflow_erasures` are mogulflow's own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from mogulflow.values.constants import (
    APPROVALS_TABLE,
    CREATED_TABLE,
    DELETE_PLAN_TABLE,
    DELETIONS_TABLE,
    ERASURES_TABLE,
    LEAD_ERASURES_TABLE,
)
from mogulflow.values.deletions import Approval, DeletePlan, DeleteReason, PlannedDelete
from mogulflow.values.entities import Entity
from mogulflow.warehouse.connection import Warehouse, naive_utc


@dataclass(frozen=True)
class ErasureRequest:
    """One row of `lead_erasures`: forget this lead."""

    lead_id: str
    requested_at: datetime | None = None


def read_erasure_requests(warehouse: Warehouse) -> list[ErasureRequest]:
    """Every erasure request, one per lead (its earliest); none without a `lead_erasures` table."""
    if not warehouse.table_exists(LEAD_ERASURES_TABLE):
        return []
    frame = warehouse.query_frame(f"SELECT lead_id, requested_at FROM {LEAD_ERASURES_TABLE}")
    requests: dict[str, ErasureRequest] = {}
    for row in frame.itertuples(index=False):
        lead_id = None if pd.isna(row.lead_id) else str(row.lead_id).strip()
        if not lead_id:
            continue
        at = None if pd.isna(row.requested_at) else pd.Timestamp(row.requested_at).to_pydatetime()
        earlier = requests.get(lead_id)
        if earlier is None or (
            at is not None and (earlier.requested_at is None or at < earlier.requested_at)
        ):
            requests[lead_id] = ErasureRequest(lead_id, at)
    return [requests[lead_id] for lead_id in sorted(requests)]


# ---- a run's planned set -------------------------------------------------------------------------

_PLAN_COLUMNS = (
    "run_id",
    "dag_id",
    "data_source_uuid",
    "entity",
    "external_id",
    "chartmogul_uuid",
    "customer_external_id",
    "reason",
    "planned_at",
)
_PLAN_KEY = ("run_id", "data_source_uuid", "entity", "external_id")


def save_plan(
    warehouse: Warehouse,
    planned: Sequence[PlannedDelete],
    *,
    run_id: str,
    dag_id: str,
    data_source_uuid: str,
    at: datetime,
) -> None:
    """Store a run's planned deletes, replacing an earlier attempt's (a retried plan task)."""
    drop_plan(warehouse, run_id=run_id, data_source_uuid=data_source_uuid)
    rows = [
        (
            run_id,
            dag_id,
            data_source_uuid,
            str(item.entity),
            item.external_id,
            item.chartmogul_uuid,
            item.customer_external_id,
            str(item.reason),
            naive_utc(at),
        )
        for item in planned
    ]
    warehouse.insert_rows(DELETE_PLAN_TABLE, _PLAN_COLUMNS, rows)


def read_plan(warehouse: Warehouse, *, run_id: str, data_source_uuid: str) -> list[PlannedDelete]:
    """The deletes a run planned: the only ones its delete step may carry out."""
    frame = warehouse.query_frame(
        f"SELECT entity, external_id, chartmogul_uuid, customer_external_id, reason FROM {DELETE_PLAN_TABLE} "
        "WHERE run_id = :run_id AND data_source_uuid = :ds ORDER BY entity, external_id",
        {"run_id": run_id, "ds": data_source_uuid},
    )
    return [_planned_delete(row) for row in frame.itertuples(index=False)]


def _planned_delete(row: Any) -> PlannedDelete:
    return PlannedDelete(
        Entity(row.entity),
        str(row.external_id),
        DeleteReason(row.reason),
        None if pd.isna(row.chartmogul_uuid) else str(row.chartmogul_uuid),
        None if pd.isna(row.customer_external_id) else str(row.customer_external_id),
    )


def read_stale_plans(
    warehouse: Warehouse, *, run_id: str, data_source_uuid: str
) -> list[tuple[str, PlannedDelete]]:
    """Planned deletes other runs left behind (a run killed, or failed, before it was recorded): each
    with its run id. Their objects may be gone without an audit row."""
    frame = warehouse.query_frame(
        "SELECT run_id, entity, external_id, chartmogul_uuid, customer_external_id, reason "
        f"FROM {DELETE_PLAN_TABLE} WHERE run_id <> :run_id AND data_source_uuid = :ds "
        "ORDER BY run_id, entity, external_id",
        {"run_id": run_id, "ds": data_source_uuid},
    )
    return [(str(row.run_id), _planned_delete(row)) for row in frame.itertuples(index=False)]


def drop_plan(warehouse: Warehouse, *, run_id: str, data_source_uuid: str | None = None) -> None:
    """Remove a run's planned deletes (once the run is recorded, or before re-planning)."""
    scope = "" if data_source_uuid is None else " AND data_source_uuid = :ds"
    warehouse.execute(
        f"DELETE FROM {DELETE_PLAN_TABLE} WHERE run_id = :run_id{scope}",
        {"run_id": run_id, "ds": data_source_uuid},
    )


# ---- the audit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deletion:
    """One object deleted from ChartMogul, as `mogulflow_deletions` keeps it."""

    entity: Entity
    external_id: str  # an erased lead's ids arrive here hashed already
    chartmogul_uuid: str | None
    reason: DeleteReason


def record_deletions(
    warehouse: Warehouse,
    deletions: Iterable[Deletion],
    *,
    run_id: str,
    dag_id: str,
    data_source_uuid: str,
    at: datetime,
) -> None:
    """Record deleted objects (an object recorded twice by a retried task stays one row)."""
    rows = [
        (
            run_id,
            dag_id,
            data_source_uuid,
            str(d.entity),
            d.external_id,
            d.chartmogul_uuid,
            str(d.reason),
            naive_utc(at),
        )
        for d in deletions
    ]
    warehouse.upsert_rows(
        DELETIONS_TABLE,
        (
            "run_id",
            "dag_id",
            "data_source_uuid",
            "entity",
            "external_id",
            "chartmogul_uuid",
            "reason",
            "deleted_at",
        ),
        rows,
        key=("run_id", "data_source_uuid", "entity", "external_id"),
    )


def deleted_in_run(warehouse: Warehouse, *, run_id: str, data_source_uuid: str) -> dict[Entity, set[str]]:
    """What a run recorded deleted so far, per entity (a resumed delete step skips it)."""
    frame = warehouse.query_frame(
        f"SELECT entity, external_id FROM {DELETIONS_TABLE} "
        "WHERE run_id = :run_id AND data_source_uuid = :ds",
        {"run_id": run_id, "ds": data_source_uuid},
    )
    found: dict[Entity, set[str]] = {}
    for row in frame.itertuples(index=False):
        found.setdefault(Entity(row.entity), set()).add(str(row.external_id))
    return found


def recorded_but_still_listed(warehouse: Warehouse, entity: Entity, data_source_uuid: str) -> set[str]:
    """Objects the audit shows deleted after they were created, still in `mogulflow_created`: a delete
    step killed between recording a delete and forgetting the object."""
    frame = warehouse.query_frame(
        f"SELECT c.external_id FROM {CREATED_TABLE} c JOIN {DELETIONS_TABLE} d "
        "ON d.entity = c.entity AND d.data_source_uuid = c.data_source_uuid "
        "AND d.external_id = c.external_id "
        "WHERE c.entity = :entity AND c.data_source_uuid = :ds AND d.deleted_at >= c.created_at",
        {"entity": str(entity), "ds": data_source_uuid},
    )
    return set(frame["external_id"].astype(str).tolist())


# ---- the fact of an erasure ---------------------------------------------------------------------


class ErasureOutcome:
    """`mogulflow_erasures.outcome`."""

    ERASED = "erased"
    NEEDS_PERSON = "needs_person"


def erasures_done(warehouse: Warehouse, data_source_uuid: str) -> set[str]:
    """Hashed lead ids whose erasure in this data source is complete."""
    frame = warehouse.query_frame(
        f"SELECT lead_hash FROM {ERASURES_TABLE} WHERE data_source_uuid = :ds AND outcome = :outcome",
        {"ds": data_source_uuid, "outcome": ErasureOutcome.ERASED},
    )
    return set(frame["lead_hash"].astype(str).tolist())


def record_erasure(
    warehouse: Warehouse,
    *,
    lead_hash: str,
    data_source_uuid: str,
    requested_at: datetime | None,
    run_id: str,
    at: datetime,
    outcome: str,
    note: str | None = None,
) -> None:
    """Keep the fact of an erasure (the lead's id only hashed)."""
    warehouse.upsert_rows(
        ERASURES_TABLE,
        ("lead_hash", "data_source_uuid", "requested_at", "erased_at", "run_id", "outcome", "note"),
        [(lead_hash, data_source_uuid, naive_utc(requested_at), naive_utc(at), run_id, outcome, note)],
        key=("lead_hash", "data_source_uuid"),
    )


def hash_ids_in_deletions(warehouse: Warehouse, hashed: Mapping[str, str]) -> None:
    """Replace ids of an erased lead (and its trials) in earlier audit rows by their hash, without uuid."""
    for external_id, digest in hashed.items():
        warehouse.execute(
            f"UPDATE {DELETIONS_TABLE} SET external_id = :digest, chartmogul_uuid = NULL "
            "WHERE external_id = :external_id",
            {"digest": digest, "external_id": external_id},
        )


def drop_plan_rows_of(warehouse: Warehouse, external_ids: Collection[str]) -> None:
    """Remove planned-delete rows naming these ids (an erased lead's)."""
    for external_id in external_ids:
        warehouse.execute(
            f"DELETE FROM {DELETE_PLAN_TABLE} WHERE external_id = :id OR customer_external_id = :id",
            {"id": external_id},
        )


# ---- the guard's questions ------------------------------------------------------------------------

_APPROVAL_COLUMNS = (
    "run_id",
    "dag_id",
    "data_source_uuid",
    "asked_at",
    "customers",
    "invoices",
    "reasons",
    "decision",
    "answered_by",
    "answered_at",
)


def record_question(
    warehouse: Warehouse, plan: DeletePlan, *, run_id: str, dag_id: str, data_source_uuid: str, at: datetime
) -> None:
    """Remember that a run asks a person to approve its mirror deletes (pending until answered)."""
    row = (run_id, dag_id, data_source_uuid, naive_utc(at), plan.customers, plan.invoices)
    reasons = "; ".join(plan.approval_reasons)
    warehouse.upsert_rows(
        APPROVALS_TABLE, _APPROVAL_COLUMNS, [(*row, reasons, None, None, None)], key=("dag_id", "run_id")
    )


def record_answer(warehouse: Warehouse, approval: Approval, *, run_id: str, dag_id: str) -> None:
    """The person's (or the timeout's) answer to a question `record_question` remembered."""
    warehouse.execute(
        f"UPDATE {APPROVALS_TABLE} SET decision = :decision, answered_by = :by, answered_at = :at "
        "WHERE dag_id = :dag_id AND run_id = :run_id",
        {
            "decision": str(approval.decision),
            "by": approval.by,
            "at": naive_utc(approval.at),
            "dag_id": dag_id,
            "run_id": run_id,
        },
    )
