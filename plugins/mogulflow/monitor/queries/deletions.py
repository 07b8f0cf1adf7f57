"""Deletions: what the runs deleted from ChartMogul and why, the approvals a person still owes, and the
erasures a person must finish.

Read from `mogulflow_deletions`, `mogulflow_approvals` and `mogulflow_erasures` (an erased lead's ids
show only hashed there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mogulflow.monitor.queries.cells import cell_datetime, cell_text
from mogulflow.monitor.queries.periods import Period
from mogulflow.values.constants import APPROVALS_TABLE, DELETIONS_TABLE, ERASURES_TABLE
from mogulflow.warehouse.connection import Warehouse

#: At most this many deletions and approvals are listed (newest first); the tables hold them all.
DELETIONS_SHOWN = 50


@dataclass(frozen=True)
class DeletedObject:
    """One object a run deleted from ChartMogul."""

    deleted_at: datetime | None
    run_id: str
    entity: str  # lead (a customer), trial (an invoice)
    external_id: str  # an erased lead's: sha256:...
    reason: str  # mirror, erasure


@dataclass(frozen=True)
class ApprovalQuestion:
    """A run that asked a person to approve its mirror deletes; `decision` None while pending."""

    run_id: str
    dag_id: str
    asked_at: datetime | None
    customers: int
    invoices: int
    reasons: str
    decision: str | None
    answered_by: str | None


@dataclass(frozen=True)
class ErasureForAPerson:
    """An erasure mogulflow could not finish: the lead is merged into another customer."""

    lead_hash: str
    customer_uuid: str | None
    seen_at: datetime | None


@dataclass(frozen=True)
class Deletions:
    """The page's deletes section."""

    recent: tuple[DeletedObject, ...] = ()
    by_reason: dict[str, int] = field(default_factory=dict)  # in the period, per reason
    pending: tuple[ApprovalQuestion, ...] = ()
    answered: tuple[ApprovalQuestion, ...] = ()
    for_a_person: tuple[ErasureForAPerson, ...] = ()


def deletions(warehouse: Warehouse, period: Period, *, data_source_uuid: str | None = None) -> Deletions:
    """Deletions of the period, pending and recent approvals, erasures a person must finish."""
    scope, params = "", {"start": period.start, "end": period.end}
    if data_source_uuid:
        scope, params = " AND data_source_uuid = :ds", {**params, "ds": data_source_uuid}
    recent: list[DeletedObject] = []
    by_reason: dict[str, int] = {}
    if warehouse.table_exists(DELETIONS_TABLE):
        where = f"deleted_at >= :start AND deleted_at < :end{scope}"
        frame = warehouse.query_frame(
            f"SELECT deleted_at, run_id, entity, external_id, reason FROM {DELETIONS_TABLE} WHERE {where} "
            f"ORDER BY deleted_at DESC, entity, external_id LIMIT {DELETIONS_SHOWN}",
            params,
        )
        recent = [
            DeletedObject(
                cell_datetime(r.deleted_at), str(r.run_id), str(r.entity), str(r.external_id), str(r.reason)
            )
            for r in frame.itertuples(index=False)
        ]
        counts = warehouse.query_frame(
            f"SELECT reason, COUNT(*) AS n FROM {DELETIONS_TABLE} WHERE {where} GROUP BY reason", params
        )
        by_reason = {str(r.reason): int(r.n) for r in counts.itertuples(index=False)}
    questions: list[ApprovalQuestion] = []
    if warehouse.table_exists(APPROVALS_TABLE):
        frame = warehouse.query_frame(
            "SELECT run_id, dag_id, asked_at, customers, invoices, reasons, decision, answered_by "
            f"FROM {APPROVALS_TABLE} WHERE 1 = 1{scope} ORDER BY asked_at DESC LIMIT {DELETIONS_SHOWN}",
            params,
        )
        questions = [
            ApprovalQuestion(
                str(r.run_id),
                str(r.dag_id),
                cell_datetime(r.asked_at),
                int(r.customers),
                int(r.invoices),
                str(r.reasons),
                cell_text(r.decision),
                cell_text(r.answered_by),
            )
            for r in frame.itertuples(index=False)
        ]
    for_a_person: list[ErasureForAPerson] = []
    if warehouse.table_exists(ERASURES_TABLE):
        frame = warehouse.query_frame(
            f"SELECT lead_hash, note, erased_at FROM {ERASURES_TABLE} WHERE outcome = 'needs_person'{scope} "
            f"ORDER BY erased_at DESC LIMIT {DELETIONS_SHOWN}",
            params,
        )
        for_a_person = [
            ErasureForAPerson(str(r.lead_hash), cell_text(r.note), cell_datetime(r.erased_at))
            for r in frame.itertuples(index=False)
        ]
    return Deletions(
        recent=tuple(recent),
        by_reason=by_reason,
        pending=tuple(q for q in questions if q.decision is None),
        answered=tuple(q for q in questions if q.decision is not None),
        for_a_person=tuple(for_a_person),
    )
