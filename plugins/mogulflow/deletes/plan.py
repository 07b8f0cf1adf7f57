"""Plan: what a run would delete, and whether a person must approve it first.

Mirror (`mirror_deletes`, full refresh only): a customer mogulflow created (`mogulflow_created`) whose
`lead_id` the extract no longer returns at all, and a trial invoice mogulflow created whose
`trial_id` it no longer returns. A rejected row still counts as present (it is in the source: failing
validation today is not a deletion); a customer the sync state knows as merged is never planned.
Erasure: every lead of `lead_erasures` not erased yet in this data source.

The planned set is stored (`mogulflow_delete_plan`): the delete step carries out nothing else, on a
first attempt, a retry or a resume after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd

from mogulflow.values.constants import SAMPLE_SIZE
from mogulflow.values.deletions import (
    Approval,
    ApprovalDecision,
    DeletePlan,
    DeleteReason,
    PlannedDelete,
    approval_reasons,
    erased_id,
)
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import ExtractReport, StagedExtract
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.created_objects import created_ids, forget_created
from mogulflow.warehouse.deletions import (
    erasures_done,
    read_erasure_requests,
    recorded_but_still_listed,
    save_plan,
)
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.parquet_parts import iter_frames, read_frame
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus, forget_entries, load_state, synced_ids

log = logging.getLogger(__name__)


def plan_deletes(
    warehouse: Warehouse, settings: RunSettings, data_source_uuid: str | None, extract: ExtractReport
) -> DeletePlan:
    """Decide what this run deletes, store the set, and say whether the guard asks a person first."""
    ensure_tables(warehouse)
    if data_source_uuid is None:  # a dry run before the first sync: nothing was ever created
        return DeletePlan(mirror=settings.mirror_deletes, dry_run=settings.dry_run)
    finish_interrupted_deletes(warehouse, data_source_uuid)
    leads = load_state(warehouse, Entity.LEAD, data_source_uuid)
    trials = load_state(warehouse, Entity.TRIAL, data_source_uuid)
    done = erasures_done(warehouse, data_source_uuid)
    erasures = [
        PlannedDelete(Entity.LEAD, request.lead_id, DeleteReason.ERASURE, _uuid(leads, request.lead_id))
        for request in read_erasure_requests(warehouse)
        if erased_id(request.lead_id) not in done
    ]
    erased = {item.external_id for item in erasures}
    customers: list[PlannedDelete] = []
    invoices: list[PlannedDelete] = []
    if settings.mirror_deletes:
        present_leads = present_ids(warehouse, extract[Entity.LEAD])
        present_trials = present_ids(warehouse, extract[Entity.TRIAL])
        merged = {key for key, entry in leads.items() if entry.status is SyncStatus.MERGED}
        gone_leads = created_ids(warehouse, Entity.LEAD, data_source_uuid) - present_leads - erased - merged
        customers = [
            PlannedDelete(Entity.LEAD, lead_id, DeleteReason.MIRROR, _uuid(leads, lead_id))
            for lead_id in sorted(gone_leads)
        ]
        leaving = gone_leads | erased  # their invoices go with them
        for trial_id in sorted(created_ids(warehouse, Entity.TRIAL, data_source_uuid) - present_trials):
            lead_id = _lead_of(trials.get(trial_id))
            if lead_id not in leaving:
                invoices.append(
                    PlannedDelete(
                        Entity.TRIAL, trial_id, DeleteReason.MIRROR, _uuid(trials, trial_id), lead_id
                    )
                )
    planned = [*erasures, *customers, *invoices]
    save_plan(
        warehouse,
        planned,
        run_id=settings.run_id,
        dag_id=settings.dag_id,
        data_source_uuid=data_source_uuid,
        at=settings.started_at,
    )
    synced = len(synced_ids(warehouse, Entity.LEAD, data_source_uuid))
    plan = DeletePlan(
        mirror=settings.mirror_deletes,
        dry_run=settings.dry_run,
        customers=len(customers),
        invoices=len(invoices),
        erasures=len(erasures),
        synced_customers=synced,
        samples={
            entity: tuple(item.external_id for item in items[:SAMPLE_SIZE])
            for entity, items in ((Entity.LEAD, customers), (Entity.TRIAL, invoices))
            if items
        },
        approval_reasons=approval_reasons(
            customers=len(customers),
            invoices=len(invoices),
            synced_customers=synced,
            max_delete_ratio=settings.max_delete_ratio,
            leads_extracted=extract[Entity.LEAD].extracted,
            trials_extracted=extract[Entity.TRIAL].extracted,
        ),
    )
    log.info("Deletes planned: %s.%s", plan.describe(), _guard_sentence(plan))
    return plan


def finish_interrupted_deletes(warehouse: Warehouse, data_source_uuid: str) -> None:
    """Forget the objects a killed delete step recorded deleted but did not forget yet: they are gone,
    and planning them again would record them twice."""
    for entity in (Entity.LEAD, Entity.TRIAL):
        ids = recorded_but_still_listed(warehouse, entity, data_source_uuid)
        if ids:
            log.info("%d %s object(s) deleted by an interrupted run: forgotten now.", len(ids), entity)
            forget_entries(warehouse, entity, ids, data_source_uuid=data_source_uuid)
            forget_created(warehouse, entity, data_source_uuid, ids)


def present_ids(warehouse: Warehouse, part: StagedExtract) -> set[str]:
    """Every id the extract returned: valid rows, and rejected rows with an id (present in the source)."""
    column = part.entity.id_column
    present: set[str] = set()
    for frame in iter_frames(warehouse, part.valid_path, columns=[column]):
        present.update(frame[column].dropna().astype(str))
    rejects = read_frame(warehouse, part.rejects_path)
    if not rejects.empty:
        present.update(str(value).strip() for value in rejects["source_id"] if not pd.isna(value))
    return present


def _uuid(state: Mapping[str, StateEntry], external_id: str) -> str | None:
    entry = state.get(external_id)
    return entry.chartmogul_uuid if entry is not None else None


def _lead_of(entry: StateEntry | None) -> str | None:
    if entry is None or not entry.payload:
        return None
    lead = entry.payload.get("customer_external_id")
    return None if lead is None else str(lead)


def _guard_sentence(plan: DeletePlan) -> str:
    if not plan.needs_approval:
        return ""
    return " They wait for a person's approval: " + "; ".join(plan.approval_reasons) + "."


def decide_without_asking(plan: DeletePlan, settings: RunSettings) -> Approval | None:
    """The guard's answer when no person needs to be asked; None when one must be."""
    if plan.dry_run or not plan.needs_approval:
        return Approval(ApprovalDecision.NOT_NEEDED)
    if settings.approve_deletes:
        return Approval(ApprovalDecision.PRE_APPROVED, by="the run's conf (approve_deletes)")
    return None
