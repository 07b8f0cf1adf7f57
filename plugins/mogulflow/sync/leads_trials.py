"""The steps of `chartmogul_leads_trials`, as Airflow-free functions its tasks call.

extract_and_validate → write_rejects → upsert_plans → upsert_customers → import_trial_invoices;
the three loads are one generic step (`mogulflow.load.entity_step`) driven by the specs below. Every
function takes the warehouse and/or the ChartMogul client plus typed values, and returns typed
values; `mogulflow.values.json_form` turns them into what XCom carries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from mogulflow.extract.source_rows import iter_entity_chunks, optional_sources
from mogulflow.extract.source_tables import SOURCE_TABLES
from mogulflow.extract.waiting import without_still_waiting
from mogulflow.load.bulk import (
    BULK_IMPORTS_IN_FLIGHT,
    BulkOutcome,
    bulk_create_customers,
    bulk_import_trial_invoices,
)
from mogulflow.load.confirm import read_held
from mogulflow.load.entity_step import (
    EntitySpec,
    PlannedLoad,
    StepInputs,
    run_entity_step,
)
from mogulflow.load.objects import load_objects
from mogulflow.load.trial_invoices import load_trial_invoices
from mogulflow.plan.sync_plan import PlannedCreate, SyncPlan, merge_plans, plan_sync
from mogulflow.sync import attributes as attribute_steps
from mogulflow.transform.customers import FirstTrialStarts, first_trial_starts, with_earlier_lead_dates
from mogulflow.transform.payloads import (
    CustomerPayload,
    TrialInvoice,
    build_plan_payloads,
    build_trial_invoices,
)
from mogulflow.validate.rules import Rule
from mogulflow.validate.validator import (
    Validation,
    attribute_rules,
    lead_rules,
    plan_rules,
    tag_rules,
    trial_rules,
    validate_into,
)
from mogulflow.values.constants import SAMPLE_SIZE
from mogulflow.values.entities import LEAD_DATE_FIELDS, OPTIONAL_ENTITIES, Entity
from mogulflow.values.id_arrays import KnownIds, as_id_array
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import ExtractReport, LoadReport, StagedExtract
from mogulflow.warehouse import staging
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.deletions import read_erasure_requests
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.parquet_parts import iter_frames, read_frame
from mogulflow.warehouse.sync_state import (
    StateEntry,
    StateSource,
    StoredState,
    SyncStatus,
    checkpoint_to,
    ids_with_status,
    load_state,
    synced_ids,
    uuids_by_external_id,
)

log = logging.getLogger(__name__)

LOADED_ENTITIES = (Entity.PLAN, Entity.LEAD, Entity.TRIAL)
# Rows per extract chunk, so per staged part and per planning chunk. A chunk's strings, pandera's
# pass and its payloads are what the steps hold beyond a few arrays of ids: 50,000 rather than the
# warehouse's default 100,000 takes ~80 MiB off a 1M-lead dry run's peak for a few more pandera calls.
EXTRACT_CHUNK_ROWS = 50_000


# ---- extract and validate ---------------------------------------------------------------------


def extract_and_validate(
    warehouse: Warehouse, settings: RunSettings, data_source_uuid: str | None
) -> ExtractReport:
    """Extract leads, plans and trials for the window, validate them, stage valid rows and rejects.

    Trials are checked against the leads and plans valid in this run or synced before; those that
    wait for theirs since an earlier run join only once it is known.
    """
    ensure_tables(warehouse)
    now = settings.started_at
    run_staging = staging.for_run(warehouse, settings.dag_id, settings.run_id)

    # Leads named in lead_erasures are never read again, nor their trials, attributes and tags (a row
    # of theirs would otherwise be rejected or wait, keeping its values): the delete step erases them.
    erased = {request.lead_id for request in read_erasure_requests(warehouse)}

    def chunks(entity: Entity) -> Iterator[pd.DataFrame]:
        # The validators normalise chunk by chunk: a raw extract never sits in memory whole.
        found = iter_entity_chunks(
            warehouse,
            entity,
            settings.window,
            data_source_uuid=data_source_uuid,
            chunk_rows=EXTRACT_CHUNK_ROWS,
        )
        if not erased or entity not in (Entity.LEAD, Entity.TRIAL, *OPTIONAL_ENTITIES):
            return found
        return (_without_erased(chunk, erased) for chunk in found)

    def validate(entity: Entity, rows: Iterable[pd.DataFrame], rules: Sequence[Rule]) -> Validation:
        # Valid rows are staged chunk by chunk as they pass: the whole extract never sits in memory.
        parts = run_staging.valid_parts(entity)
        found = validate_into(rows, SOURCE_TABLES[entity], rules, parts)
        staged[entity] = run_staging.stage_rejects(
            entity, found.rejected, found.extracted, found.valid, parts.finish()
        )
        return found

    staged: dict[Entity, StagedExtract] = {}
    known_leads = validate(Entity.LEAD, chunks(Entity.LEAD), lead_rules(now)).valid_ids()
    known_plans = validate(Entity.PLAN, chunks(Entity.PLAN), plan_rules(now)).valid_ids()
    waiting: set[str] = set()
    if data_source_uuid:
        known_leads = known_leads.union(synced_ids(warehouse, Entity.LEAD, data_source_uuid))
        known_plans = known_plans.union(synced_ids(warehouse, Entity.PLAN, data_source_uuid))
        waiting = ids_with_status(warehouse, Entity.TRIAL, data_source_uuid, (SyncStatus.WAITING,))
    trial_rows = (
        without_still_waiting(
            chunk,
            Entity.TRIAL,
            window=settings.window,
            time_column="updated_at",
            waiting=waiting,
            known_parents={"lead_id": known_leads, "plan_id": known_plans},
        )
        for chunk in chunks(Entity.TRIAL)
    )
    validate(
        Entity.TRIAL, trial_rows, trial_rules(now, known_lead_ids=known_leads, known_plan_ids=known_plans)
    )
    for entity in optional_sources(warehouse):
        # Attributes and tags wait for their lead as trials do; their waiting mark is the lead's id.
        rules = (attribute_rules if entity is Entity.ATTRIBUTE else tag_rules)(
            now, known_lead_ids=known_leads
        )
        parked = (
            ids_with_status(warehouse, entity, data_source_uuid, (SyncStatus.WAITING,))
            if data_source_uuid
            else set()
        )
        rows = (
            without_still_waiting(
                chunk,
                entity,
                window=settings.window,
                time_column="updated_at",
                waiting=parked,
                known_parents={"lead_id": known_leads},
            )
            for chunk in chunks(entity)
        )
        validate(entity, rows, rules)
    report = ExtractReport(staged)
    for part in report.parts.values():
        log.info(
            "%s: extracted %d, valid %d, rejected %d (%.1f%%)%s",
            part.entity,
            part.extracted,
            part.valid,
            part.rejected,
            100 * part.reject_ratio,
            f": {dict(part.rejects_by_rule)}" if part.rejected else "",
        )
    return report


def _without_erased(rows: pd.DataFrame, erased: set[str]) -> pd.DataFrame:
    """The rows whose lead is not named in lead_erasures."""
    lead_ids = rows["lead_id"].astype("string").str.strip()
    keep = ~lead_ids.isin(list(erased)).fillna(False)
    return rows if keep.all() else rows.loc[keep.to_numpy()].reset_index(drop=True)


# ---- the three loads ----------------------------------------------------------------------------


def _versions(frame: pd.DataFrame, id_column: str) -> dict[str, datetime]:
    """Each row's source `updated_at` by id (what `plan_sync` compares with the synced version)."""
    if frame.empty or "updated_at" not in frame:
        return {}
    # Plain datetimes, converted column-wise: a pandas Timestamp per row costs seconds at 1M rows.
    updated = pd.to_datetime(frame["updated_at"], utc=True).dt.to_pydatetime()
    return dict(zip(frame[id_column].to_numpy(dtype=object), updated, strict=True))


def _valid_rows(inputs: StepInputs, entity: Entity, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return read_frame(inputs.warehouse, inputs.extract[entity].valid_path, columns=columns)


def _plan_plans(inputs: StepInputs, state: StateSource) -> PlannedLoad:
    plans = _valid_rows(inputs, Entity.PLAN)
    return PlannedLoad(
        plan_sync(
            Entity.PLAN,
            build_plan_payloads(plans),
            state.entries(plans["plan_id"]),
            versions=_versions(plans, "plan_id"),
            state_size=state.size,
        )
    )


def _sample_size(inputs: StepInputs) -> int | None:
    """A dry run reports counts and samples: its plan keeps only the samples (see `merge_plans`)."""
    return SAMPLE_SIZE if inputs.settings.dry_run else None


def _first_trial_starts(inputs: StepInputs) -> FirstTrialStarts:
    """Each lead's earliest trial start among the staged valid trials, read chunk by chunk."""
    valid_path = inputs.extract[Entity.TRIAL].valid_path
    return first_trial_starts(iter_frames(inputs.warehouse, valid_path, columns=["lead_id", "started_at"]))


def _plan_customers(inputs: StepInputs, state: StateSource) -> PlannedLoad:
    # The lead-date default rule needs only each lead's earliest trial start: one entry per lead.
    first_trials = _first_trial_starts(inputs)
    empty_leads: list[pd.DataFrame] = []

    def chunk_plans() -> Iterator[SyncPlan]:
        # Leads are planned one staged part at a time, each against its own leads' state entries:
        # neither a million payloads nor a million entries sit in memory at once.
        for leads in iter_frames(inputs.warehouse, inputs.extract[Entity.LEAD].valid_path):
            empty_leads[:] = [leads.iloc[:0]]
            entries = state.entries(leads["lead_id"])
            previous = {external_id: entry.payload for external_id, entry in entries.items() if entry.payload}
            # Only this chunk's leads' first trials: the earlier leads are re-dated once, below.
            in_run, _ = with_earlier_lead_dates(leads, first_trials.of_leads(leads["lead_id"]), previous)
            yield plan_sync(
                Entity.LEAD,
                in_run,
                entries,
                versions=_versions(leads, "lead_id"),
                fields_after_merge=LEAD_DATE_FIELDS,
                state_size=state.size,
            )

    plan, counts = merge_plans(Entity.LEAD, chunk_plans(), keep=_sample_size(inputs))
    redated: list[CustomerPayload] = []
    earlier: dict[str, StateEntry] = {}
    if state.size and len(first_trials.leads):
        # Earlier leads (not in this run) whose first trial arrived now.
        lead_ids = iter_frames(inputs.warehouse, inputs.extract[Entity.LEAD].valid_path, columns=["lead_id"])
        in_run = KnownIds.of(np.concatenate([as_id_array(chunk["lead_id"]) for chunk in lead_ids]))
        besides = first_trials.besides(in_run)
        earlier = state.entries(besides["lead_id"])
        previous = {external_id: entry.payload for external_id, entry in earlier.items() if entry.payload}
        _, redated = with_earlier_lead_dates(empty_leads[0], besides, previous)
    redate = plan_sync(
        Entity.LEAD,
        redated,
        earlier,
        versions={p.external_id: earlier[p.external_id].source_updated_at for p in redated},
        fields_after_merge=LEAD_DATE_FIELDS,
        state_size=state.size,
    )
    return PlannedLoad(plan, redate, counts if inputs.settings.dry_run else None)


def _plan_invoices(inputs: StepInputs, state: StateSource) -> PlannedLoad:
    def chunk_plans() -> Iterator[SyncPlan]:
        # Trials are planned one staged part at a time, each against its own trials' entries.
        for trials in iter_frames(inputs.warehouse, inputs.extract[Entity.TRIAL].valid_path):
            # run_id: invoices the customers step imported with their new customer count as created here.
            yield plan_sync(
                Entity.TRIAL,
                build_trial_invoices(trials),
                state.entries(trials["trial_id"]),
                versions=_versions(trials, "trial_id"),
                run_id=inputs.settings.run_id,
                state_size=state.size,
            )

    plan, counts = merge_plans(Entity.TRIAL, chunk_plans(), keep=_sample_size(inputs))
    return PlannedLoad(plan, counts=counts if inputs.settings.dry_run else None)


def _load_objects(inputs: StepInputs, data_source_uuid: str, plan: SyncPlan) -> LoadReport:
    return load_objects(
        inputs.client,
        plan,
        data_source_uuid=data_source_uuid,
        run_id=inputs.settings.run_id,
        checkpoint=checkpoint_to(inputs.warehouse),
        max_workers=inputs.workers,
    )


def _load_invoices(inputs: StepInputs, data_source_uuid: str, plan: SyncPlan) -> LoadReport:
    warehouse = inputs.warehouse
    return load_trial_invoices(
        inputs.client,
        plan,
        data_source_uuid=data_source_uuid,
        run_id=inputs.settings.run_id,
        customer_uuid_by_lead=uuids_by_external_id(
            load_state(warehouse, Entity.LEAD, data_source_uuid, _leads_of_invoices(plan))
        ),
        plan_uuid_by_plan=_held_plan_uuids(inputs, data_source_uuid, plan),
        checkpoint=checkpoint_to(warehouse),
        max_workers=inputs.workers,
    )


def _leads_of_invoices(plan: SyncPlan) -> set[str]:
    """The lead ids of the trial invoices a plan writes: whose customer uuids the load needs."""
    payloads = (item.payload for item in (*plan.creates, *plan.updates))
    return {payload.customer_external_id for payload in payloads if isinstance(payload, TrialInvoice)}


def _held_plan_uuids(inputs: StepInputs, data_source_uuid: str, plan: SyncPlan) -> dict[str, str]:
    """The uuids of the plans the trials to write name, as ChartMogul holds them now (a line item names
    its plan by uuid: a plan deleted and made again behind mogulflow's back has another one).

    One listing of the data source's plans in the common case (a few hundred plans are a page or two);
    a plan the read could not reach keeps the uuid the sync state remembers.
    """
    payloads = (item.payload for item in (*plan.creates, *plan.updates))
    wanted = {payload.plan_external_id for payload in payloads if isinstance(payload, TrialInvoice)}
    if not wanted:
        return {}
    state = load_state(inputs.warehouse, Entity.PLAN, data_source_uuid)
    held = read_held(
        inputs.client,
        Entity.PLAN,
        data_source_uuid,
        wanted,
        known_size=len(state),
        max_workers=inputs.workers,
    )
    stored = uuids_by_external_id(state)
    uuids = {plan_id: str(found["uuid"]) for plan_id, found in held.found.items()}
    uuids.update({plan_id: stored[plan_id] for plan_id in held.unknown if plan_id in stored})
    return uuids


def _imports_in_flight(inputs: StepInputs) -> int:
    """JSON imports at once: never more than the connections the client may open."""
    return max(1, min(BULK_IMPORTS_IN_FLIGHT, inputs.workers))


def _new_customers_invoices(
    inputs: StepInputs, data_source_uuid: str, new_leads: set[str]
) -> list[PlannedCreate]:
    """The new trial invoices of new customers whose plan is synced: they travel in the customer's import."""
    warehouse = inputs.warehouse
    leads = KnownIds.of(new_leads)
    plans: KnownIds | None = None
    state = StoredState(warehouse, Entity.TRIAL, data_source_uuid)
    creates: list[PlannedCreate] = []
    # One staged part at a time (planned row by row, so as a whole): not every valid trial at once.
    for trials in iter_frames(warehouse, inputs.extract[Entity.TRIAL].valid_path):
        trials = trials.loc[leads.contains(trials["lead_id"])]
        if trials.empty:
            continue
        if plans is None:
            plans = synced_ids(warehouse, Entity.PLAN, data_source_uuid)
        trials = trials.loc[plans.contains(trials["plan_id"])]
        plan = plan_sync(
            Entity.TRIAL,
            build_trial_invoices(trials),
            state.entries(trials["trial_id"]),
            versions=_versions(trials, "trial_id"),
            state_size=state.size,
        )
        creates.extend(plan.creates)
    return creates


def _load_customers(inputs: StepInputs, data_source_uuid: str, plan: SyncPlan) -> LoadReport:
    return _load_objects(inputs, data_source_uuid, attribute_steps.carrying_attributes(inputs, plan))


def _bulk_customers(inputs: StepInputs, data_source_uuid: str, plan: SyncPlan) -> BulkOutcome:
    plan = attribute_steps.carrying_attributes(inputs, plan, bulk=True)
    new_leads = {item.payload.external_id for item in plan.creates}
    return bulk_create_customers(
        inputs.client,
        plan.creates,
        data_source_uuid=data_source_uuid,
        run_id=inputs.settings.run_id,
        checkpoint=checkpoint_to(inputs.warehouse),
        invoices=_new_customers_invoices(inputs, data_source_uuid, new_leads),
        missing_uuids=plan.missing_uuids,
        in_flight=_imports_in_flight(inputs),
    )


def _bulk_invoices(inputs: StepInputs, data_source_uuid: str, plan: SyncPlan) -> BulkOutcome:
    warehouse = inputs.warehouse
    return bulk_import_trial_invoices(
        inputs.client,
        plan.creates,
        data_source_uuid=data_source_uuid,
        run_id=inputs.settings.run_id,
        synced_leads=synced_ids(warehouse, Entity.LEAD, data_source_uuid),
        synced_plans=synced_ids(warehouse, Entity.PLAN, data_source_uuid),
        checkpoint=checkpoint_to(warehouse),
        missing_uuids=plan.missing_uuids,
        in_flight=_imports_in_flight(inputs),
    )


PLANS = EntitySpec(Entity.PLAN, plan=_plan_plans, load=_load_objects)
CUSTOMERS = EntitySpec(
    Entity.LEAD,
    plan=_plan_customers,
    load=_load_customers,
    bulk=_bulk_customers,
    rebuild_on_first_contact=True,
)
TRIAL_INVOICES = EntitySpec(Entity.TRIAL, plan=_plan_invoices, load=_load_invoices, bulk=_bulk_invoices)
SPECS: Mapping[Entity, EntitySpec] = {spec.entity: spec for spec in (PLANS, CUSTOMERS, TRIAL_INVOICES)}


def load_entity(inputs: StepInputs, entity: Entity) -> LoadReport:
    """Run the load step of one entity (plans, customers, trial invoices, attributes or tags)."""
    if entity in OPTIONAL_ENTITIES:
        return attribute_steps.sync_lead_attributes(inputs, entity)
    return run_entity_step(SPECS[entity], inputs)
