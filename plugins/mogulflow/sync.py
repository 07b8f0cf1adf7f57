"""The steps of `chartmogul_leads_trials`, as Airflow-free functions the DAG's tasks call.

Each function takes the warehouse and/or a ChartMogul client plus small JSON-able values (what
XCom carries between tasks) and returns small JSON-able values. Frames travel as staged files.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from mogulflow import staging
from mogulflow.extract import iter_entity_chunks
from mogulflow.load import (
    LoadResult,
    bulk_create_customers,
    bulk_import_trial_invoices,
    combine,
    load_objects,
    load_trial_invoices,
    read_customer_state,
    uses_bulk,
    uuids_by_external_id,
)
from mogulflow.model import Entity, EntityCounts, RejectedRow, RunSummary, ValidationResult, Window
from mogulflow.plan import SyncPlan, plan_sync
from mogulflow.record import (
    STATUS_WAITING,
    StateEntry,
    ensure_tables,
    ids_with_status,
    load_state,
    record_rejects,
    record_run,
    save_state,
    synced_ids,
)
from mogulflow.transform import (
    CustomerPayload,
    build_customer_payloads,
    build_plan_payloads,
    build_trial_invoices,
)
from mogulflow.validate import validate_leads, validate_plans, validate_trials
from mogulflow.warehouse import Warehouse

log = logging.getLogger(__name__)

LOADED_ENTITIES = (Entity.PLAN, Entity.LEAD, Entity.TRIAL)
# What a lead still owns once merged into its paying customer: the funnel dates.
LEAD_DATE_FIELDS = ("lead_created_at", "free_trial_started_at")
SAMPLE_SIZE = 5


class RejectRatioExceeded(RuntimeError):
    """Too large a share of one entity's rows was rejected: refuse to load that entity."""


@dataclass(frozen=True)
class RunSettings:
    """Everything a run decided at its start; travels between tasks as a dict."""

    run_id: str
    dag_id: str
    window: Window
    started_at: datetime
    dry_run: bool
    data_source_name: str
    max_reject_ratio: float

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-able form for XCom."""
        return {
            "run_id": self.run_id,
            "dag_id": self.dag_id,
            "window_start": _iso(self.window.start),
            "window_end": _iso(self.window.end),
            "full_refresh": self.window.full_refresh,
            "started_at": _iso(self.started_at),
            "dry_run": self.dry_run,
            "data_source_name": self.data_source_name,
            "max_reject_ratio": self.max_reject_ratio,
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> RunSettings:
        """The inverse of `to_xcom`."""
        return cls(
            run_id=value["run_id"],
            dag_id=value["dag_id"],
            window=Window(_parse(value["window_start"]), _parse(value["window_end"]), value["full_refresh"]),
            started_at=_parse(value["started_at"]),
            dry_run=value["dry_run"],
            data_source_name=value["data_source_name"],
            max_reject_ratio=float(value["max_reject_ratio"]),
        )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _parse(text: str | None) -> datetime | None:
    if text in (None, ""):
        return None
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "on"}
    return bool(value)


def resolve_settings(
    params: Mapping[str, Any],
    *,
    run_id: str,
    dag_id: str,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    started_at: datetime | None = None,
) -> RunSettings:
    """Decide the run's window from its params and data interval.

    `full_refresh` wins; then explicit `start`/`end` (a missing `end` means the run's start);
    then the data interval; a run with neither (a manual run without a logical date) reads the
    24 hours before it started.
    """
    started = (started_at or datetime.now(UTC)).astimezone(UTC)
    full_refresh = _as_bool(params.get("full_refresh", False))
    start = _parse(params.get("start") or None)
    end = _parse(params.get("end") or None)
    if full_refresh:
        window = Window(None, None, True)
    elif start is not None or end is not None:
        if start is None:
            raise ValueError("param 'end' was given without 'start': give both (ISO-8601, UTC) or neither")
        window = Window(start, end or started)
    elif (
        data_interval_start is not None
        and data_interval_end is not None
        and data_interval_end > data_interval_start
    ):
        window = Window(data_interval_start.astimezone(UTC), data_interval_end.astimezone(UTC))
    else:
        window = Window(started - timedelta(days=1), started)
        log.info("No data interval and no start/end params: reading the 24 hours before the run started.")
    ratio = float(
        params.get("max_reject_ratio", 0.05) if params.get("max_reject_ratio") is not None else 0.05
    )
    if not 0 <= ratio <= 1:
        raise ValueError(f"param 'max_reject_ratio' must be between 0 and 1, found {ratio}")
    name = str(params.get("data_source_name") or "Leads").strip()
    return RunSettings(
        run_id=run_id,
        dag_id=dag_id,
        window=window,
        started_at=started,
        dry_run=_as_bool(params.get("dry_run", False)),
        data_source_name=name,
        max_reject_ratio=ratio,
    )


def ensure_data_source(client: Any, name: str, *, dry_run: bool) -> str | None:
    """The uuid of the custom data source called `name`, created if missing (not in a dry run)."""
    for source in client.list_data_sources(name=name):
        if source.get("name") == name:
            return source["uuid"]
    if dry_run:
        log.info("Dry run: data source %r does not exist yet and would be created.", name)
        return None
    created = client.create_data_source(name)
    log.info("Created ChartMogul data source %r (%s).", name, created["uuid"])
    return created["uuid"]


# ---- extract and validate ---------------------------------------------------------------------


def _rejects_frame(rejects: tuple[RejectedRow, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": [str(r.entity) for r in rejects],
            "source_id": [r.source_id for r in rejects],
            "reason": [r.reason for r in rejects],
            "rules": [
                "; ".join(f"{f.field}: {f.rule}" if f.field else f.rule for f in r.failures) for r in rejects
            ],
        },
        dtype="object",
    )


def stage_validation_result(settings: RunSettings, result: ValidationResult) -> dict[str, Any]:
    """Write one entity's valid rows and rejects to the run's staging folder; return its counts."""
    folder = staging.run_folder(settings.dag_id, settings.run_id)
    valid_path = staging.write_frame(folder / f"{result.entity}_valid.parquet", result.valid)
    rejects_path = staging.write_frame(
        folder / f"{result.entity}_rejects.parquet", _rejects_frame(result.rejected)
    )
    by_rule: Counter[str] = Counter()
    for reject in result.rejected:
        for failure in reject.failures or ():
            by_rule[f"{failure.field}: {failure.rule}" if failure.field else failure.rule] += 1
    return {
        "extracted": result.extracted,
        "valid": len(result.valid),
        "rejected": len(result.rejected),
        "reject_ratio": result.reject_ratio,
        "rejects_by_rule": dict(by_rule.most_common()),
        "valid_path": str(valid_path),
        "rejects_path": str(rejects_path),
    }


def extract_and_validate(
    warehouse: Warehouse, settings: RunSettings, data_source_uuid: str | None
) -> dict[str, Any]:
    """Extract leads, plans and trials for the window, validate them, stage valid rows and rejects.

    Trials are checked against the leads and plans valid in this run or synced before.
    """
    ensure_tables(warehouse)
    now = settings.started_at

    def chunks(entity: Entity) -> Iterator[pd.DataFrame]:
        # The validators normalise chunk by chunk: a raw extract never sits in memory whole.
        return iter_entity_chunks(warehouse, entity, settings.window, data_source_uuid=data_source_uuid)

    def ids(result: ValidationResult) -> set[str]:
        return set(result.valid[result.entity.id_column].to_numpy(dtype=object))

    report: dict[str, Any] = {}
    leads = validate_leads(chunks(Entity.LEAD), now=now)
    report[str(Entity.LEAD)] = stage_validation_result(settings, leads)
    known_leads, leads = ids(leads), None  # staged: from here on only the ids are needed
    plans = validate_plans(chunks(Entity.PLAN), now=now)
    report[str(Entity.PLAN)] = stage_validation_result(settings, plans)
    known_plans, plans = ids(plans), None
    if data_source_uuid:
        known_leads |= synced_ids(warehouse, Entity.LEAD, data_source_uuid)
        known_plans |= synced_ids(warehouse, Entity.PLAN, data_source_uuid)
    waiting = (
        ids_with_status(warehouse, Entity.TRIAL, data_source_uuid, (STATUS_WAITING,))
        if data_source_uuid
        else set()
    )
    trial_rows = (
        _without_still_waiting(chunk, settings.window, waiting, known_leads, known_plans)
        for chunk in chunks(Entity.TRIAL)
    )
    trials = validate_trials(trial_rows, now=now, known_lead_ids=known_leads, known_plan_ids=known_plans)
    if data_source_uuid and not settings.dry_run:
        _mark_waiting(warehouse, settings, data_source_uuid, trials.rejected)
    report[str(Entity.TRIAL)] = stage_validation_result(settings, trials)
    for entity, part in report.items():
        log.info(
            "%s: extracted %d, valid %d, rejected %d (%.1f%%)%s",
            entity,
            part["extracted"],
            part["valid"],
            part["rejected"],
            100 * part["reject_ratio"],
            f": {part['rejects_by_rule']}" if part["rejected"] else "",
        )
    return report


def _without_still_waiting(
    trials: pd.DataFrame, window: Window, waiting: set[str], known_leads: set[str], known_plans: set[str]
) -> pd.DataFrame:
    """Drop the waiting trials from outside the window whose lead or plan is still unknown.

    They were rejected (and recorded) when they came in; they join a run again only once their
    lead and plan are known, so a run's counts stay those of its window.
    """
    if not waiting or trials.empty:
        return trials
    in_window = pd.Series(True, index=trials.index)
    if not window.full_refresh:
        updated = pd.to_datetime(trials["updated_at"], utc=True)
        in_window = (updated >= pd.Timestamp(window.start)) & (updated < pd.Timestamp(window.end))
    ready = trials["lead_id"].isin(known_leads) & trials["plan_id"].isin(known_plans)
    keep = in_window | ~trials["trial_id"].isin(waiting) | ready
    if not keep.all():
        log.info(
            "%d trials still wait for their lead or plan (rejected when they came in).", int((~keep).sum())
        )
    return trials.loc[keep].reset_index(drop=True)


_PARENT_FIELDS = {"lead_id", "plan_id"}


def _mark_waiting(
    warehouse: Warehouse, settings: RunSettings, data_source_uuid: str, rejects: tuple[RejectedRow, ...]
) -> None:
    """Remember the trials rejected only for an unknown lead or plan, to accept them once it arrives.

    A trial synced before keeps its entry (and its invoice): only never-synced trials wait.
    """
    synced = synced_ids(warehouse, Entity.TRIAL, data_source_uuid)
    entries = [
        StateEntry(
            Entity.TRIAL,
            data_source_uuid,
            reject.source_id,
            None,
            None,
            None,
            STATUS_WAITING,
            settings.started_at,
            settings.run_id,
        )
        for reject in rejects
        if reject.source_id
        and reject.source_id not in synced
        and reject.failures
        and all(f.field in _PARENT_FIELDS and f.rule.startswith("must name") for f in reject.failures)
    ]
    if entries:
        save_state(warehouse, entries)


def write_rejects(
    warehouse: Warehouse, settings: RunSettings, extract_report: Mapping[str, Any]
) -> dict[str, int]:
    """Copy the staged rejects of every entity into `mogulflow_rejects`."""
    ensure_tables(warehouse)
    written: dict[str, int] = {}
    for entity_name, part in extract_report.items():
        frame = staging.read_frame(part["rejects_path"])
        rejects = [
            RejectedRow(
                Entity(entity_name), None if pd.isna(row.source_id) else str(row.source_id), str(row.reason)
            )
            for row in frame.itertuples(index=False)
        ]
        written[entity_name] = record_rejects(
            warehouse, run_id=settings.run_id, dag_id=settings.dag_id, rejects=rejects, at=settings.started_at
        )
    if any(written.values()):
        log.warning("Rejected rows recorded in mogulflow_rejects (run_id=%s): %s", settings.run_id, written)
    return written


# ---- plan and load -----------------------------------------------------------------------------


def check_reject_ratio(settings: RunSettings, entity: Entity, extract_report: Mapping[str, Any]) -> None:
    """Raise `RejectRatioExceeded` when the entity's reject share is above `max_reject_ratio`."""
    part = extract_report[str(entity)]
    if part["reject_ratio"] > settings.max_reject_ratio:
        raise RejectRatioExceeded(
            f"{part['rejected']} of {part['extracted']} {entity} rows were rejected "
            f"({100 * part['reject_ratio']:.1f}% > max_reject_ratio {100 * settings.max_reject_ratio:.1f}%); "
            f"not loading {entity}s. See mogulflow_rejects for run_id={settings.run_id}: "
            f"{part['rejects_by_rule']}"
        )


def _dry_run_report(plan: SyncPlan) -> dict[str, Any]:
    log.info(
        "Dry run, %s: would create %d, would update %d, unchanged %d",
        plan.entity,
        len(plan.creates),
        len(plan.updates),
        len(plan.unchanged),
    )
    return {
        "entity": str(plan.entity),
        "created": len(plan.creates),
        "updated": len(plan.updates),
        "unchanged": len(plan.unchanged),
        "failed": 0,
        "dry_run": True,
        "samples": {
            "create": [c.payload.external_id for c in plan.creates[:SAMPLE_SIZE]],
            "update": [{u.payload.external_id: sorted(u.changed_fields)} for u in plan.updates[:SAMPLE_SIZE]],
            "unchanged": list(plan.unchanged[:SAMPLE_SIZE]),
        },
        "errors": [],
    }


def _load_report(result: LoadResult) -> dict[str, Any]:
    if result.failed:
        log.warning(
            "%s: %d rows failed; the next run retries them. First errors: %s",
            result.entity,
            result.failed,
            [f"{e.external_id}: {e.message}" for e in result.errors[:SAMPLE_SIZE]],
        )
    return {
        "entity": str(result.entity),
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "failed": result.failed,
        "dry_run": False,
        "aborted": result.aborted,
        "errors": [dataclasses.asdict(e) | {"entity": str(e.entity)} for e in result.errors[:50]],
    }


def _checkpoint(warehouse: Warehouse) -> Callable[[Sequence[StateEntry]], None]:
    return functools.partial(save_state, warehouse)


def upsert_plans(
    warehouse: Warehouse,
    client: Any,
    settings: RunSettings,
    data_source_uuid: str | None,
    extract_report: Mapping[str, Any],
) -> dict[str, Any]:
    """Create or update every valid plan of the run."""
    check_reject_ratio(settings, Entity.PLAN, extract_report)
    plans = staging.read_frame(extract_report[str(Entity.PLAN)]["valid_path"])
    state = load_state(warehouse, Entity.PLAN, data_source_uuid) if data_source_uuid else {}
    plan = plan_sync(Entity.PLAN, build_plan_payloads(plans), state, versions=_versions(plans, "plan_id"))
    if settings.dry_run:
        return _dry_run_report(plan)
    result = load_objects(
        client,
        plan,
        data_source_uuid=_required(data_source_uuid),
        run_id=settings.run_id,
        checkpoint=_checkpoint(warehouse),
        max_workers=_workers(client),
    )
    return _load_report(result)


def _customer_payloads(
    leads: pd.DataFrame, trials: pd.DataFrame, state: Mapping[str, StateEntry]
) -> tuple[list[CustomerPayload], list[CustomerPayload]]:
    """This run's customers, and the earlier leads whose first trial arrived now (cross-run default rule).

    The second list is kept apart: those leads were not extracted by this run, so they are not
    part of its extracted = created + updated + ... account.
    """
    payloads = build_customer_payloads(leads, trials)
    in_run = {p.external_id for p in payloads}
    result: list[CustomerPayload] = []
    redated: list[CustomerPayload] = []
    for payload in payloads:
        previous = state.get(payload.external_id)
        stored = (previous.payload or {}).get("lead_created_at") if previous else None
        if payload.lead_created_at is None and stored:
            # Its trials came in an earlier run: keep the date those trials gave it.
            payload = dataclasses.replace(payload, lead_created_at=_parse(stored))
        result.append(payload)
    if not trials.empty and state:
        earliest = trials.groupby("lead_id")["started_at"].min()
        # Only leads of earlier runs qualify: pick them before iterating (a Timestamp per item).
        earliest = earliest[earliest.index.isin(list(state)) & ~earliest.index.isin(list(in_run))]
        for lead_id, started in earliest.items():
            previous = state.get(lead_id)
            if lead_id in in_run or previous is None or not previous.payload:
                continue
            if previous.payload.get("lead_created_at"):
                continue
            redated.append(
                _payload_from_state(lead_id, previous.payload, lead_created_at=started.to_pydatetime())
            )
    return result, redated


def _versions(frame: pd.DataFrame, id_column: str) -> dict[str, Any]:
    """Each row's source `updated_at` by id (what `plan_sync` compares with the synced version)."""
    if frame.empty or "updated_at" not in frame:
        return {}
    # Plain datetimes, converted column-wise: a pandas Timestamp per row costs seconds at 1M rows.
    updated = pd.to_datetime(frame["updated_at"], utc=True).dt.to_pydatetime()
    return dict(zip(frame[id_column].to_numpy(dtype=object), updated, strict=True))


def _payload_from_state(
    external_id: str, fields: Mapping[str, Any], *, lead_created_at: datetime
) -> CustomerPayload:
    return CustomerPayload(
        external_id=external_id,
        name=fields.get("name"),
        email=fields.get("email"),
        country=fields.get("country"),
        state=fields.get("state"),
        city=fields.get("city"),
        zip=fields.get("zip"),
        lead_created_at=lead_created_at,
        free_trial_started_at=_parse(fields.get("free_trial_started_at")),
    )


def upsert_customers(
    warehouse: Warehouse,
    client: Any,
    settings: RunSettings,
    data_source_uuid: str | None,
    extract_report: Mapping[str, Any],
) -> dict[str, Any]:
    """Create new leads as customers, PATCH changed ones, leave unchanged ones alone."""
    check_reject_ratio(settings, Entity.LEAD, extract_report)
    leads = staging.read_frame(extract_report[str(Entity.LEAD)]["valid_path"])
    # The lead-date default rule needs only each trial's lead and start.
    trials = staging.read_frame(
        extract_report[str(Entity.TRIAL)]["valid_path"], columns=["lead_id", "started_at"]
    )
    state = load_state(warehouse, Entity.LEAD, data_source_uuid) if data_source_uuid else {}
    if data_source_uuid and not state and not leads.empty:
        # First contact (a re-install, a lost state table): learn what the data source already holds.
        state = read_customer_state(client, data_source_uuid=data_source_uuid, run_id=settings.run_id)
        if state:
            log.info(
                "Sync state was empty; %d customers found in the data source: comparing, not creating.",
                len(state),
            )
            if not settings.dry_run:
                save_state(warehouse, list(state.values()))
    in_run, redated = _customer_payloads(leads, trials, state)
    versions = _versions(leads, "lead_id")
    del leads, trials  # the payloads hold what is needed: free the frames before planning
    plan = plan_sync(Entity.LEAD, in_run, state, versions=versions, fields_after_merge=LEAD_DATE_FIELDS)
    del versions
    redate_plan = plan_sync(
        Entity.LEAD,
        redated,
        state,
        versions={p.external_id: state[p.external_id].source_updated_at for p in redated},
        fields_after_merge=LEAD_DATE_FIELDS,
    )
    if settings.dry_run:
        return _dry_run_report(plan) | {"redated": {"updated": len(redate_plan.updates), "failed": 0}}
    ds = _required(data_source_uuid)
    checkpoint = _checkpoint(warehouse)
    bulk = None
    if uses_bulk(plan):
        log.info("%d new customers: creating them through JSON imports.", len(plan.creates))
        bulk = bulk_create_customers(
            client, plan.creates, data_source_uuid=ds, run_id=settings.run_id, checkpoint=checkpoint
        )
        plan = dataclasses.replace(plan, creates=bulk.leftover)
    result = load_objects(
        client,
        plan,
        data_source_uuid=ds,
        run_id=settings.run_id,
        checkpoint=checkpoint,
        max_workers=_workers(client),
    )
    report = _load_report(combine(bulk.result, result) if bulk else result)
    if redate_plan.updates:
        log.info(
            "%d leads synced earlier get their lead date from a trial of this run.", len(redate_plan.updates)
        )
    redate = load_objects(
        client, redate_plan, data_source_uuid=ds, run_id=settings.run_id, checkpoint=checkpoint, max_workers=1
    )
    report["redated"] = {
        "updated": redate.updated,
        "failed": redate.failed,
        "errors": [f"{e.external_id}: {e.message}" for e in redate.errors[:SAMPLE_SIZE]],
    }
    return report


def import_trial_invoices(
    warehouse: Warehouse,
    client: Any,
    settings: RunSettings,
    data_source_uuid: str | None,
    extract_report: Mapping[str, Any],
) -> dict[str, Any]:
    """Import one trial invoice per new trial (re-import changed ones) into its customer."""
    check_reject_ratio(settings, Entity.TRIAL, extract_report)
    trials = staging.read_frame(extract_report[str(Entity.TRIAL)]["valid_path"])
    state = load_state(warehouse, Entity.TRIAL, data_source_uuid) if data_source_uuid else {}
    plan = plan_sync(
        Entity.TRIAL, build_trial_invoices(trials), state, versions=_versions(trials, "trial_id")
    )
    if settings.dry_run:
        return _dry_run_report(plan)
    ds = _required(data_source_uuid)
    checkpoint = _checkpoint(warehouse)
    bulk = None
    if uses_bulk(plan):
        log.info("%d new trial invoices: importing them through JSON imports.", len(plan.creates))
        bulk = bulk_import_trial_invoices(
            client,
            plan.creates,
            data_source_uuid=ds,
            run_id=settings.run_id,
            synced_leads=synced_ids(warehouse, Entity.LEAD, ds),
            synced_plans=synced_ids(warehouse, Entity.PLAN, ds),
            checkpoint=checkpoint,
        )
        plan = dataclasses.replace(plan, creates=bulk.leftover)
    result = load_trial_invoices(
        client,
        plan,
        data_source_uuid=ds,
        run_id=settings.run_id,
        customer_uuid_by_lead=uuids_by_external_id(load_state(warehouse, Entity.LEAD, ds).values()),
        plan_uuid_by_plan=uuids_by_external_id(load_state(warehouse, Entity.PLAN, ds).values()),
        checkpoint=checkpoint,
        max_workers=_workers(client),
    )
    return _load_report(combine(bulk.result, result) if bulk else result)


def _required(data_source_uuid: str | None) -> str:
    if not data_source_uuid:
        raise RuntimeError("no ChartMogul data source uuid: the ensure_data_source task must run first")
    return data_source_uuid


def _workers(client: Any) -> int:
    settings = getattr(client, "settings", None)
    return max(1, int(getattr(settings, "max_connections", 4) or 4))


# ---- the account ----------------------------------------------------------------------------------


def summarize_run(
    settings: RunSettings,
    extract_report: Mapping[str, Any] | None,
    load_reports: Mapping[str, Mapping[str, Any] | None],
    *,
    task_failures: Mapping[str, str],
    finished_at: datetime | None = None,
) -> tuple[RunSummary, dict[str, Any]]:
    """Add up every entity's rows and decide the run's outcome.

    Valid rows of an entity whose load never ran (ratio exceeded, task failed) count as failed,
    so that extracted = created + updated + unchanged + rejected + failed always holds.
    """
    counts: dict[Entity, EntityCounts] = {}
    problems: list[str] = list(task_failures.values())
    details: dict[str, Any] = {"rejects_by_rule": {}, "api_errors": {}, "dry_run_samples": {}}
    for entity in LOADED_ENTITIES:
        part = (extract_report or {}).get(str(entity))
        if part is None:
            counts[entity] = EntityCounts()
            continue
        load = load_reports.get(str(entity))
        if part["reject_ratio"] > settings.max_reject_ratio:
            problems.append(
                f"{entity}: {100 * part['reject_ratio']:.1f}% of rows rejected, above max_reject_ratio "
                f"{100 * settings.max_reject_ratio:.1f}%: not loaded"
            )
        if load is None:
            loaded = {"created": 0, "updated": 0, "unchanged": 0, "failed": part["valid"]}
        else:
            loaded = {k: int(load[k]) for k in ("created", "updated", "unchanged", "failed")}
            if load.get("errors"):
                details["api_errors"][str(entity)] = load["errors"][: SAMPLE_SIZE * 2]
            if load.get("samples"):
                details["dry_run_samples"][str(entity)] = load["samples"]
            if load.get("aborted"):
                problems.append(f"{entity} load stopped early: {load['aborted']}")
            redated = load.get("redated") or {}
            if redated.get("updated") or redated.get("failed"):
                details["lead_dates_from_later_trials"] = redated
            if redated.get("failed"):
                problems.append(
                    f"{redated['failed']} earlier leads could not get their lead date from a new trial; "
                    "the next run retries them"
                )
        entity_counts = EntityCounts(extracted=part["extracted"], rejected=part["rejected"], **loaded)
        if entity_counts.accounted != entity_counts.extracted:
            problems.append(
                f"{entity}: counts do not add up: extracted {entity_counts.extracted} but "
                f"{entity_counts.accounted} accounted for"
            )
        if entity_counts.failed and load is not None:
            problems.append(
                f"{entity}: {entity_counts.failed} rows failed and will be retried by the next run"
            )
        counts[entity] = entity_counts
        if part["rejects_by_rule"]:
            details["rejects_by_rule"][str(entity)] = part["rejects_by_rule"]
    if extract_report is None and not problems:
        problems.append("extraction did not finish")
    rejected = sum(c.rejected for c in counts.values())
    if problems:
        outcome = "failed"
    elif rejected:
        outcome = "success_with_rejects"
    else:
        outcome = "success"
    message = (
        "; ".join(problems)
        if problems
        else (f"{rejected} rows rejected: see mogulflow_rejects" if rejected else "all rows synced")
    )
    summary = RunSummary(
        run_id=settings.run_id,
        dag_id=settings.dag_id,
        window=settings.window,
        started_at=settings.started_at,
        finished_at=finished_at or datetime.now(UTC),
        dry_run=settings.dry_run,
        outcome=outcome,
        counts=counts,
        message=message,
    )
    return summary, details


def write_run(
    warehouse: Warehouse,
    summary: RunSummary,
    details: Mapping[str, Any],
    *,
    data_source: tuple[str, str | None],
) -> None:
    """Record the run's account in `mogulflow_runs` and log it."""
    ensure_tables(warehouse)
    record_run(warehouse, summary, details=details, data_source=data_source)
    level = logging.WARNING if summary.outcome != "success" else logging.INFO
    log.log(level, "Run %s ended %s: %s", summary.run_id, summary.outcome, summary.message)
    for entity, c in summary.counts.items():
        log.log(
            level,
            "  %-6s extracted %d = created %d + updated %d + unchanged %d + rejected %d + failed %d",
            entity,
            c.extracted,
            c.created,
            c.updated,
            c.unchanged,
            c.rejected,
            c.failed,
        )
