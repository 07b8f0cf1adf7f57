"""The attribute and tag steps of `chartmogul_leads_trials` (optional tables `lead_attributes`, `lead_tags`).

`sync_lead_attributes` plans an entity's staged rows against what mogulflow set before
(`mogulflow.plan.attributes`) and writes them customer by customer (`mogulflow.load.attributes`);
`carrying_attributes` lets the customers step send a new customer's attributes and tags in the
request that creates it. See docs/attributes.md.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pandas as pd

from mogulflow.load.attributes import CustomerRefs, load_lead_attributes
from mogulflow.load.entity_step import StepInputs, check_reject_ratio, log_outcome
from mogulflow.plan.attributes import AttributeOp, AttributePlan, plan_lead_attributes
from mogulflow.plan.sync_plan import SyncPlan
from mogulflow.transform.attributes import (
    AttributePayload,
    LeadPayload,
    TagPayload,
    build_attribute_payloads,
    build_tag_payloads,
    carried_by_lead,
)
from mogulflow.transform.payloads import CustomerPayload
from mogulflow.validate.validator import IDENTITY_SEPARATOR
from mogulflow.values.entities import OPTIONAL_ENTITIES, Entity
from mogulflow.values.id_arrays import KnownIds
from mogulflow.values.reject_policy import RejectVerdict, judge_rejects
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse import staging
from mogulflow.warehouse.parquet_parts import PartWriter, iter_frames
from mogulflow.warehouse.staged_rejects import read_rejects
from mogulflow.warehouse.sync_state import (
    SyncStatus,
    checkpoint_to,
    clear_waiting,
    customer_refs,
    ids_with_status,
    load_state,
    save_synced_rows,
)

log = logging.getLogger(__name__)

#: The staging kind of the leads whose create carried their attributes and tags (one column, lead_id).
CARRIED = "carried"
#: Whether the customers of a JSON import carry their attributes and tags. The docs give a bulk
#: import's customers the Create-a-Customer fields, `attributes` among them; no recording shows it
#: (docs/api-notes.md). False: new customers of a bulk load get theirs from the attribute steps
#: instead (one read of the data source, one POST per customer and kind).
CARRY_IN_JSON_IMPORTS = True


def _carried_location(inputs: StepInputs) -> tuple[staging.RunStaging, str]:
    run = staging.for_run(inputs.warehouse, inputs.settings.dag_id, inputs.settings.run_id)
    return run, run.location(Entity.LEAD, CARRIED)


def _stage_carried(inputs: StepInputs, leads: set[str]) -> None:
    """Remember, for the attribute steps, the leads whose create carries their attributes and tags."""
    leads = leads | _carried_leads(inputs)
    run, location = _carried_location(inputs)
    run.store.remove(location)
    PartWriter(run.store, location).write(pd.DataFrame({"lead_id": sorted(leads)}, dtype=object))


def _carried_leads(inputs: StepInputs) -> set[str]:
    """The leads whose create (in this run) carried their attributes and tags."""
    _, location = _carried_location(inputs)
    try:
        return {str(lead) for rows in iter_frames(inputs.warehouse, location) for lead in rows["lead_id"]}
    except FileNotFoundError:
        return set()


def _lead_payloads(inputs: StepInputs, entity: Entity) -> Iterator[LeadPayload]:
    """The payloads of the entity's staged valid rows, part by part."""
    build = build_attribute_payloads if entity is Entity.ATTRIBUTE else build_tag_payloads
    for rows in iter_frames(inputs.warehouse, inputs.extract[entity].valid_path):
        yield from build(rows)


def _lead_versions(inputs: StepInputs, entity: Entity) -> dict[str, datetime]:
    versions: dict[str, datetime] = {}
    column = "key" if entity is Entity.ATTRIBUTE else "tag"
    for rows in iter_frames(inputs.warehouse, inputs.extract[entity].valid_path):
        ids = rows["lead_id"].astype(str) + IDENTITY_SEPARATOR + rows[column].astype(str)
        updated = pd.to_datetime(rows["updated_at"], utc=True).dt.to_pydatetime()
        versions.update(zip(ids.to_numpy(dtype=object), updated, strict=True))
    return versions


def plan_attributes(inputs: StepInputs, entity: Entity) -> AttributePlan:
    """The plan of the run's attribute (or tag) rows against what mogulflow set before."""
    settings, ds = inputs.settings, inputs.data_source_uuid
    state = {
        external_id: entry
        for external_id, entry in (load_state(inputs.warehouse, entity, ds) if ds else {}).items()
        if entry.payload is not None or entry.status is not SyncStatus.WAITING
    }
    spared: set[str] = set()
    if settings.window.full_refresh:
        part = inputs.extract[entity]
        spared = {r.row.source_id for r in read_rejects(inputs.warehouse, part) if r.row.source_id}
    return plan_lead_attributes(
        entity,
        _lead_payloads(inputs, entity),
        state,
        versions=_lead_versions(inputs, entity),
        run_id=settings.run_id,
        full_refresh=settings.window.full_refresh,
        leads_with_rejects=spared,
    )


def sync_lead_attributes(inputs: StepInputs, entity: Entity) -> LoadReport:
    """Plan and write the run's attributes (or tags): only what changed, never what others set."""
    settings, warehouse, ds = inputs.settings, inputs.warehouse, inputs.data_source_uuid
    part = inputs.extract.get(entity)
    if part is None:
        log.info("%s: no %s table in the warehouse: the feature is off.", entity, entity.table)
        return LoadReport(entity)
    check_reject_ratio(settings, part)
    plan = plan_attributes(inputs, entity)
    if settings.dry_run:
        counts = Counter(w.op for w in plan.writes if w.counted)
        report = LoadReport(
            entity,
            created=counts[AttributeOp.ADD] + len(plan.written_this_run),
            updated=sum(counts.values()) - counts[AttributeOp.ADD],
            unchanged=len(plan.unchanged),
            dry_run=True,
        )
        log_outcome(report)
        return report
    if not ds:
        raise RuntimeError("no ChartMogul data source uuid: the ensure_data_source task must run first")
    leads = customer_refs(warehouse, Entity.LEAD, ds)
    uuid, status = leads["chartmogul_uuid"], leads["status"]
    usable = uuid.notna() & (uuid != "") & (status != str(SyncStatus.FAILED))  # as uuids_by_external_id
    # created in this run by a request that carried their attributes and tags (confirmed synced)
    written = (leads["run_id"] == settings.run_id) & (status == str(SyncStatus.SYNCED))
    refs = CustomerRefs(
        uuids=dict(zip(leads.loc[usable, "external_id"], uuid[usable], strict=True)),
        known_size=len(leads),
        carried=frozenset(leads.loc[written, "external_id"]) & _carried_leads(inputs),
    )
    report, removed = load_lead_attributes(
        inputs.client,
        plan,
        refs,
        data_source_uuid=ds,
        run_id=settings.run_id,
        checkpoint=checkpoint_to(warehouse),
        save_synced=lambda rows: save_synced_rows(warehouse, rows),
        max_workers=inputs.workers,
    )
    if removed:
        log.info("%s: %d removed that no row names any more (full refresh).", entity, removed)
    if ids_with_status(warehouse, entity, ds, (SyncStatus.WAITING,)):
        frames = iter_frames(warehouse, inputs.extract[entity].valid_path, columns=["lead_id"])
        clear_waiting(warehouse, entity, ds, {str(lead) for rows in frames for lead in rows["lead_id"]})
    problems = []
    if report.aborted:
        problems.append(f"{entity} load stopped early: {report.aborted}")
    if report.failed:
        problems.append(f"{entity}: {report.failed} rows failed and will be retried by the next run")
    report = dataclasses.replace(report, problems=tuple(problems))
    log_outcome(report)
    return report


def carrying_attributes(inputs: StepInputs, plan: SyncPlan, *, bulk: bool = False) -> SyncPlan:
    """The customers plan with each new customer carrying its attributes and tags in its create
    (`bulk`: the creates go in JSON imports, see `CARRY_IN_JSON_IMPORTS`)."""
    if bulk and not CARRY_IN_JSON_IMPORTS:
        return plan
    # Only what the entity's own step will account for: not an entity whose rejects stop its load.
    carrying = [
        entity
        for entity in OPTIONAL_ENTITIES
        if (part := inputs.extract.get(entity)) is not None
        and judge_rejects(part, inputs.settings) is not RejectVerdict.TOO_MANY
    ]
    if not plan.creates or not carrying:
        return plan
    new_leads = KnownIds.of({item.payload.external_id for item in plan.creates})
    found: dict[Entity, list[LeadPayload]] = {}
    for entity in carrying:
        for rows in iter_frames(inputs.warehouse, inputs.extract[entity].valid_path):
            rows = rows.loc[new_leads.contains(rows["lead_id"])]
            build = build_attribute_payloads if entity is Entity.ATTRIBUTE else build_tag_payloads
            found.setdefault(entity, []).extend(build(rows))
    carried = carried_by_lead(
        [p for p in found.get(Entity.ATTRIBUTE, []) if isinstance(p, AttributePayload)],
        [p for p in found.get(Entity.TAG, []) if isinstance(p, TagPayload)],
    )
    if not carried:
        return plan
    _stage_carried(inputs, set(carried))
    creates = tuple(
        dataclasses.replace(item, payload=dataclasses.replace(item.payload, carried=carried[lead]))
        if (lead := item.payload.external_id) in carried and isinstance(item.payload, CustomerPayload)
        else item
        for item in plan.creates
    )
    return dataclasses.replace(plan, creates=creates)
