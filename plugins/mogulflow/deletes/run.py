"""Run: carry out a run's planned deletes, each confirmed by what ChartMogul holds, each recorded.

Only the stored plan (`mogulflow_delete_plan`) is carried out, so a retried task, or one resumed after
a kill, never deletes outside the set the guard passed. Every object is looked up by its external id
first (the stored uuid is a hint, not proof); a customer that holds other records (merged) or invoices
mogulflow did not create is kept and reported. A 404 to the DELETE is success only once a second
lookup shows the object gone (the answer to an earlier attempt may have been lost). Each confirmed
delete is recorded in `mogulflow_deletions` before the sync state forgets the object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.errors import NotFoundError
from mogulflow.chartmogul.shapes import describe_customer, is_merged
from mogulflow.deletes.erasure import erase_from_tables, personal_values
from mogulflow.extract.source_rows import ids_of_lead
from mogulflow.load.writes import LOAD_STOPPERS
from mogulflow.values.constants import ERRORS_KEPT, SAMPLE_SIZE
from mogulflow.values.deletions import (
    Approval,
    ApprovalDecision,
    DeleteReason,
    DeleteReport,
    PlannedDelete,
    erased_id,
)
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.run_summary import RowError
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.created_objects import created_ids, forget_created
from mogulflow.warehouse.deletions import (
    Deletion,
    ErasureOutcome,
    deleted_in_run,
    drop_plan,
    read_erasure_requests,
    read_plan,
    read_stale_plans,
    record_deletions,
    record_erasure,
)
from mogulflow.warehouse.sync_state import SyncState, forget_entries, load_state

log = logging.getLogger(__name__)

# How many ids a dry run lists per entity in the run's details (the task log lists them all).
DRY_RUN_LISTED = 100

Entry = dict[str, Any]


@dataclass
class _Progress:
    """What the step found so far, besides the audit rows it wrote."""

    errors: list[RowError] = field(default_factory=list)
    kept_merged: list[str] = field(default_factory=list)
    kept_foreign: list[str] = field(default_factory=list)
    for_a_person: list[str] = field(default_factory=list)
    erased: int = 0


def carry_out_deletes(
    warehouse: Warehouse,
    client: ChartMogulClient,
    settings: RunSettings,
    data_source_uuid: str | None,
    approval: Approval,
) -> DeleteReport:
    """Delete what the run planned (mirror deletes only as the guard allows), record every delete."""
    if data_source_uuid is None:
        return DeleteReport(approval, dry_run=settings.dry_run)
    planned = read_plan(warehouse, run_id=settings.run_id, data_source_uuid=data_source_uuid)
    if settings.dry_run:
        return _dry_run_report(planned, approval)
    notes: list[str] = []
    mirror = [item for item in planned if item.reason is DeleteReason.MIRROR]
    held_back = 0
    if mirror and not approval.decision.allows_mirror:
        held_back = len(mirror)
        notes.append(f"{approval.describe()}: {len(mirror)} mirror delete(s) not carried out")
        log.warning("%s.", notes[-1])
        planned = [item for item in planned if item.reason is DeleteReason.ERASURE]
    deleter = _Deleter(warehouse, client, settings, data_source_uuid)
    for item in planned:
        try:
            deleter.delete(item)
        except LOAD_STOPPERS:
            raise  # the key was refused or the API is down: the task fails, a retry resumes from the plan
        except Exception as error:
            shown = erased_id(item.external_id) if item.reason is DeleteReason.ERASURE else item.external_id
            deleter.progress.errors.append(RowError(item.entity, shown, str(error) or type(error).__name__))
            log.warning("Could not delete %s %s: %s", item.entity, shown, error)
    return deleter.report(approval, notes, held_back)


def settle_interrupted_deletes(
    warehouse: Warehouse, client: ChartMogulClient, settings: RunSettings, data_source_uuid: str | None
) -> int:
    """Settle what runs killed mid-delete left behind, before this run's loads read the sync state.

    A planned object of another run that ChartMogul no longer holds was deleted without an audit row:
    it is recorded (under this run) and forgotten, so that a row back in the source is created again
    by this run's loads instead of counted unchanged. Then the stale planned sets go: nothing of them
    is deleted by this run. Returns how many deletes were settled.
    """
    if data_source_uuid is None or settings.dry_run:
        return 0
    stale = read_stale_plans(warehouse, run_id=settings.run_id, data_source_uuid=data_source_uuid)
    if not stale:
        return 0
    deleter = _Deleter(warehouse, client, settings, data_source_uuid)
    listed = {
        entity: created_ids(warehouse, entity, data_source_uuid) for entity in (Entity.LEAD, Entity.TRIAL)
    }
    settled = 0
    for _run_id, item in stale:
        if item.reason is not DeleteReason.MIRROR or item.external_id not in listed[item.entity]:
            continue  # an erasure is planned again from lead_erasures; a forgotten object is settled
        if item.entity is Entity.LEAD:
            gone = client.find_customer(data_source_uuid, item.external_id) is None
            trials = deleter.trials_of(item.external_id)
        else:
            gone = client.find_invoice(data_source_uuid, item.external_id) is None
            trials = set()
        if gone:
            deletion = Deletion(item.entity, item.external_id, item.chartmogul_uuid, DeleteReason.MIRROR)
            deleter.record(
                [
                    deletion,
                    *(
                        Deletion(Entity.TRIAL, t, _uuid_of(deleter.trials, t), DeleteReason.MIRROR)
                        for t in sorted(trials)
                    ),
                ]
            )
            settled += 1
    for run_id in sorted({run_id for run_id, _ in stale}):
        drop_plan(warehouse, run_id=run_id, data_source_uuid=data_source_uuid)
    log.warning(
        "%d planned delete(s) left by interrupted runs: %d found deleted and recorded, the rest dropped.",
        len(stale),
        settled,
    )
    return settled


def _dry_run_report(planned: list[PlannedDelete], approval: Approval) -> DeleteReport:
    listed: dict[Entity, list[str]] = {}
    for item in planned:
        shown = erased_id(item.external_id) if item.reason is DeleteReason.ERASURE else item.external_id
        listed.setdefault(item.entity, []).append(shown)
    for entity, ids in listed.items():
        log.info("Dry run: would delete %d %s object(s): %s", len(ids), entity, ids)
    return DeleteReport(
        approval,
        dry_run=True,
        samples={entity: tuple(ids[:DRY_RUN_LISTED]) for entity, ids in listed.items()},
        notes=tuple(f"dry run: would delete {len(ids)} {entity} object(s)" for entity, ids in listed.items()),
    )


class _Deleter:
    """The deletes of one run in one data source."""

    def __init__(
        self, warehouse: Warehouse, client: ChartMogulClient, settings: RunSettings, data_source_uuid: str
    ) -> None:
        self.warehouse = warehouse
        self.client = client
        self.settings = settings
        self.data_source_uuid = data_source_uuid
        self.done = deleted_in_run(warehouse, run_id=settings.run_id, data_source_uuid=data_source_uuid)
        self.created_trials = created_ids(warehouse, Entity.TRIAL, data_source_uuid)
        self.trials: SyncState = load_state(warehouse, Entity.TRIAL, data_source_uuid)
        self.requested = {r.lead_id: r.requested_at for r in read_erasure_requests(warehouse)}
        self.progress = _Progress()

    def delete(self, item: PlannedDelete) -> None:
        """Carry out one planned delete."""
        if item.reason is DeleteReason.ERASURE:
            self.erase(item.external_id)
        elif item.external_id in self.done.get(item.entity, set()):
            return  # an earlier attempt of this run deleted and recorded it
        elif item.entity is Entity.LEAD:
            self.mirror_customer(item)
        else:
            self.mirror_invoice(item)

    # ---- mirror ---------------------------------------------------------------------------------

    def mirror_customer(self, item: PlannedDelete) -> None:
        lead_id = item.external_id
        held = self.client.find_customer(self.data_source_uuid, lead_id)
        if held is not None and is_merged(held):
            self.progress.kept_merged.append(lead_id)
            log.warning(
                "Not deleting lead %s: it is part of the merged customer %s.",
                lead_id,
                describe_customer(held),
            )
            return
        invoices = self.invoices_of(held)
        foreign = sorted(set(invoices) - self.created_trials)
        if foreign:
            self.progress.kept_foreign.append(lead_id)
            log.warning(
                "Not deleting lead %s: its customer holds invoices mogulflow did not create: %s",
                lead_id,
                foreign[:SAMPLE_SIZE],
            )
            return
        uuid = None if held is None else str(held["uuid"])
        if held is not None:
            self.delete_confirmed(
                lambda: self.client.delete_customer(uuid),
                lambda: self.client.find_customer(self.data_source_uuid, lead_id),
            )
        # Gone before we acted (an earlier attempt whose answer was lost): its invoices went with it.
        trial_ids = set(invoices) | self.trials_of(lead_id)
        deletions = [Deletion(Entity.LEAD, lead_id, uuid or item.chartmogul_uuid, DeleteReason.MIRROR)]
        deletions += [
            Deletion(Entity.TRIAL, t, invoices.get(t) or _uuid_of(self.trials, t), DeleteReason.MIRROR)
            for t in sorted(trial_ids)
        ]
        self.record(deletions)

    def mirror_invoice(self, item: PlannedDelete) -> None:
        trial_id = item.external_id
        held = self.client.find_invoice(self.data_source_uuid, trial_id)
        uuid = None if held is None else str(held["uuid"])
        if held is not None:
            self.delete_confirmed(
                lambda: self.client.delete_invoice_by_uuid(uuid),
                lambda: self.client.find_invoice(self.data_source_uuid, trial_id),
            )
        self.record([Deletion(Entity.TRIAL, trial_id, uuid or item.chartmogul_uuid, DeleteReason.MIRROR)])

    # ---- erasure --------------------------------------------------------------------------------

    def erase(self, lead_id: str) -> None:
        digest = erased_id(lead_id)
        held = self.client.find_customer(self.data_source_uuid, lead_id)
        values = personal_values(self.warehouse, lead_id, held)
        trial_ids = self.trials_of(lead_id)
        # ...and those never synced (rejected, waiting), as the source still holds them
        trial_ids |= ids_of_lead(
            self.warehouse, Entity.TRIAL, lead_id, data_source_uuid=self.data_source_uuid
        )
        if held is not None and is_merged(held):
            # The lead's records live on in a customer that is not ours alone: a person decides.
            note = str(held["uuid"])
            self.progress.for_a_person.append(note)
            log.warning(
                "Erasure of a lead (%s) merged into customer %s: not deleted, a person must handle it.",
                digest,
                note,
            )
            erase_from_tables(self.warehouse, lead_id, trial_ids, values)
            self.fact(digest, lead_id, ErasureOutcome.NEEDS_PERSON, note)
            return
        invoices = self.invoices_of(held)
        if held is not None:
            uuid = str(held["uuid"])
            self.delete_confirmed(
                lambda: self.client.delete_customer(uuid),
                lambda: self.client.find_customer(self.data_source_uuid, lead_id),
            )
            deletions = [Deletion(Entity.LEAD, digest, None, DeleteReason.ERASURE)]
            deletions += [
                Deletion(Entity.TRIAL, erased_id(t), None, DeleteReason.ERASURE) for t in sorted(invoices)
            ]
            self.record(deletions, forget=False)
        erase_from_tables(self.warehouse, lead_id, trial_ids | set(invoices), values)
        self.fact(digest, lead_id, ErasureOutcome.ERASED)
        self.progress.erased += 1

    def fact(self, digest: str, lead_id: str, outcome: str, note: str | None = None) -> None:
        record_erasure(
            self.warehouse,
            lead_hash=digest,
            data_source_uuid=self.data_source_uuid,
            requested_at=self.requested.get(lead_id),
            run_id=self.settings.run_id,
            at=datetime.now(UTC),
            outcome=outcome,
            note=note,
        )

    # ---- shared ---------------------------------------------------------------------------------

    def trials_of(self, lead_id: str) -> set[str]:
        """The trials the sync state knows as this lead's invoices."""
        return {t for t, e in self.trials.items() if (e.payload or {}).get("customer_external_id") == lead_id}

    def invoices_of(self, customer: Entry | None) -> dict[str, str]:
        """The customer's invoices in this data source: external id → uuid ({} without a customer)."""
        if customer is None:
            return {}
        return {
            str(invoice["external_id"]): str(invoice["uuid"])
            for invoice in self.client.iter_invoices(customer_uuid=str(customer["uuid"]))
            if invoice.get("external_id") is not None
        }

    @staticmethod
    def delete_confirmed(delete: Callable[[], None], look_up: Callable[[], Entry | None]) -> None:
        """Delete; a 404 counts only once a lookup shows the object gone."""
        try:
            delete()
        except NotFoundError:
            if look_up() is not None:
                raise RuntimeError(
                    "ChartMogul answered 404 to the delete but still holds the object"
                ) from None

    def record(self, deletions: list[Deletion], *, forget: bool = True) -> None:
        """The audit first, then the state forgets: a kill in between leaves a delete that the next
        attempt finds gone and records again, never an unrecorded one."""
        record_deletions(
            self.warehouse,
            deletions,
            run_id=self.settings.run_id,
            dag_id=self.settings.dag_id,
            data_source_uuid=self.data_source_uuid,
            at=datetime.now(UTC),
        )
        for deletion in deletions:
            self.done.setdefault(deletion.entity, set()).add(deletion.external_id)
        if not forget:
            return
        for entity in (Entity.LEAD, Entity.TRIAL):
            ids = [d.external_id for d in deletions if d.entity is entity]
            if ids:
                forget_entries(self.warehouse, entity, ids, data_source_uuid=self.data_source_uuid)
                forget_created(self.warehouse, entity, self.data_source_uuid, ids)

    def report(self, approval: Approval, notes: list[str], held_back: int) -> DeleteReport:
        done = deleted_in_run(
            self.warehouse, run_id=self.settings.run_id, data_source_uuid=self.data_source_uuid
        )
        progress = self.progress
        problems = []
        if progress.errors:
            problems.append(f"{len(progress.errors)} delete(s) failed (retried by the next run)")
        if held_back and approval.decision is ApprovalDecision.TIMED_OUT:
            problems.append("mirror deletes waited for approval and timed out: nothing deleted")
        if progress.erased:
            notes.append(f"{progress.erased} lead(s) of lead_erasures erased")
        if progress.kept_merged:
            notes.append(
                f"kept {len(progress.kept_merged)} merged customer(s): {progress.kept_merged[:SAMPLE_SIZE]}"
            )
        if progress.kept_foreign:
            notes.append(
                f"kept {len(progress.kept_foreign)} customer(s) holding invoices mogulflow did not create: "
                f"{progress.kept_foreign[:SAMPLE_SIZE]}"
            )
        if progress.for_a_person:
            notes.append(
                f"{len(progress.for_a_person)} erasure(s) of a lead merged into another customer "
                "need a person: "
                f"{progress.for_a_person[:SAMPLE_SIZE]}"
            )
        return DeleteReport(
            approval,
            deleted={entity: len(ids) for entity, ids in done.items()},
            failed=len(progress.errors),
            errors=tuple(progress.errors[:ERRORS_KEPT]),
            samples={entity: tuple(sorted(ids)[:SAMPLE_SIZE]) for entity, ids in done.items()},
            kept_merged=tuple(progress.kept_merged),
            erasures_for_a_person=tuple(progress.for_a_person),
            erased_leads=progress.erased,
            held_back=held_back,
            problems=tuple(problems),
            notes=tuple(notes),
        )


def _uuid_of(state: SyncState, external_id: str) -> str | None:
    entry = state.get(external_id)
    return None if entry is None else entry.chartmogul_uuid
