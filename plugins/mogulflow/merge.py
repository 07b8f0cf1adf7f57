"""The steps of `chartmogul_merge_converted_leads`, as Airflow-free functions the DAG's tasks call.

A conversion says: lead `lead_id` (a customer mogulflow created in its own data source) became the
paying customer `billing_customer_external_id` that a billing integration (Stripe, Chargebee, ...)
creates in `billing_data_source_uuid`. The DAG merges the lead into that paying customer, once:

    extract + validate → (record rejects) → look up the paying customers, waiting for the ones
    that do not exist yet → merge → record the run

Like `mogulflow.sync`, every function takes the warehouse and/or a ChartMogul client plus small
JSON-able values (what XCom carries) and returns small JSON-able values. The waiting itself lives
in `mogulflow.merge_wait` (the Airflow trigger); the lookups it repeats are here
(`wait_for_paying_customers`), so they test without Airflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mogulflow import staging
from mogulflow.api.errors import AuthenticationError, ChartMogulError, CircuitOpenError
from mogulflow.extract import extract_entity
from mogulflow.model import Entity, EntityCounts, RejectedRow, RunSummary, Window
from mogulflow.record import (
    STATUS_FAILED,
    STATUS_MERGED,
    STATUS_WAITING,
    StateEntry,
    ensure_tables,
    ids_with_status,
    load_state,
    save_state,
    synced_ids,
)
from mogulflow.sync import RunSettings, resolve_settings, stage_validation_result, write_rejects
from mogulflow.transform import content_hash
from mogulflow.validate import PRESENT, validate_conversions
from mogulflow.warehouse import Warehouse

log = logging.getLogger(__name__)

DEFAULT_LOOKUP_INTERVAL_SECONDS = 60.0
DEFAULT_LOOKUP_TIMEOUT_SECONDS = 1200.0
SAMPLE_SIZE = 5

# How each valid conversion ended; the run's conversions_* columns count them.
MERGED = "merged"  # conversions_created
ALREADY_MERGED = "already_merged"  # conversions_unchanged
NOT_FOUND = "not_found"  # conversions_failed: the paying customer did not appear in time
FAILED = "failed"  # conversions_failed: API error, lead customer missing, lead merged elsewhere


# ---- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeSettings:
    """Everything a merge run decided at its start: the shared run settings plus the wait's pace."""

    run: RunSettings
    lookup_interval_seconds: float = DEFAULT_LOOKUP_INTERVAL_SECONDS
    lookup_timeout_seconds: float = DEFAULT_LOOKUP_TIMEOUT_SECONDS

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-able form for XCom."""
        return self.run.to_xcom() | {
            "lookup_interval_seconds": self.lookup_interval_seconds,
            "lookup_timeout_seconds": self.lookup_timeout_seconds,
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> MergeSettings:
        """The inverse of `to_xcom`."""
        return cls(
            run=RunSettings.from_xcom(value),
            lookup_interval_seconds=float(value["lookup_interval_seconds"]),
            lookup_timeout_seconds=float(value["lookup_timeout_seconds"]),
        )


def resolve_merge_settings(
    params: Mapping[str, Any],
    *,
    run_id: str,
    dag_id: str,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    started_at: datetime | None = None,
) -> MergeSettings:
    """The run's window and data source exactly as `chartmogul_leads_trials` decides them, plus the wait.

    `lookup_interval_seconds` must be positive; `lookup_timeout_seconds` may be 0 (look once, no wait).
    """
    run = resolve_settings(
        params,
        run_id=run_id,
        dag_id=dag_id,
        data_interval_start=data_interval_start,
        data_interval_end=data_interval_end,
        started_at=started_at,
    )
    interval = _number(params, "lookup_interval_seconds", DEFAULT_LOOKUP_INTERVAL_SECONDS)
    timeout = _number(params, "lookup_timeout_seconds", DEFAULT_LOOKUP_TIMEOUT_SECONDS)
    if interval <= 0:
        raise ValueError(f"param 'lookup_interval_seconds' must be positive, found {interval}")
    if timeout < 0:
        raise ValueError(f"param 'lookup_timeout_seconds' must not be negative, found {timeout}")
    return MergeSettings(run, interval, timeout)


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"param {name!r} must be a number of seconds, found {value!r}") from None


def find_data_source(client: Any, name: str) -> str | None:
    """The uuid of the custom data source called `name`, or None: this DAG never creates it."""
    for source in client.list_data_sources(name=name):
        if source.get("name") == name:
            return source["uuid"]
    log.warning(
        "ChartMogul has no data source %r: no lead was synced there, so every conversion is rejected. "
        "Run chartmogul_leads_trials first, or set data_source_name.",
        name,
    )
    return None


# ---- values --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class BillingKey:
    """Who the paying customer is: its external id in the billing integration's data source."""

    data_source_uuid: str
    external_id: str

    def to_xcom(self) -> dict[str, str]:
        """A JSON-able form."""
        return {"data_source_uuid": self.data_source_uuid, "external_id": self.external_id}

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> BillingKey:
        """The inverse of `to_xcom`."""
        return cls(str(value["data_source_uuid"]), str(value["external_id"]))

    def __str__(self) -> str:
        return f"{self.external_id!r} in data source {self.data_source_uuid}"


@dataclass(frozen=True)
class Conversion:
    """One valid `conversions` row: merge lead `lead_id` into the paying customer `billing`."""

    lead_id: str
    billing: BillingKey

    def state_payload(self) -> dict[str, str]:
        """What the sync state remembers of the conversion (to tell a changed one from a done one)."""
        return {
            "billing_data_source_uuid": self.billing.data_source_uuid,
            "billing_customer_external_id": self.billing.external_id,
        }


@dataclass(frozen=True)
class PayingCustomer:
    """A paying customer found in ChartMogul, with every identity merged into it so far."""

    key: BillingKey
    uuid: str
    data_source_uuids: tuple[str, ...] = ()
    external_ids: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, key: BillingKey, body: Mapping[str, Any]) -> PayingCustomer:
        """Build from a customer as `GET /v1/customers` returns it."""
        return cls(
            key=key,
            uuid=str(body["uuid"]),
            data_source_uuids=tuple(str(s) for s in body.get("data_source_uuids") or () if s),
            external_ids=tuple(str(i) for i in body.get("external_ids") or () if i is not None),
        )

    def holds(self, data_source_uuid: str, external_id: str) -> bool:
        """Whether ChartMogul already merged that identity (e.g. our lead) into this customer."""
        return data_source_uuid in self.data_source_uuids and external_id in self.external_ids

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-able form."""
        return self.key.to_xcom() | {
            "uuid": self.uuid,
            "data_source_uuids": list(self.data_source_uuids),
            "external_ids": list(self.external_ids),
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> PayingCustomer:
        """The inverse of `to_xcom`."""
        return cls(
            key=BillingKey.from_xcom(value),
            uuid=str(value["uuid"]),
            data_source_uuids=tuple(value.get("data_source_uuids") or ()),
            external_ids=tuple(value.get("external_ids") or ()),
        )


@dataclass(frozen=True)
class LookupReport:
    """Where the wait for paying customers ended: who was found, who was still missing, and why."""

    found: tuple[PayingCustomer, ...] = ()
    missing: Mapping[BillingKey, str] = field(default_factory=dict)  # key → last lookup error, or ""
    polls: int = 0
    waited_seconds: float = 0.0

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-able form (also the trigger's event payload)."""
        return {
            "found": [customer.to_xcom() for customer in self.found],
            "missing": [key.to_xcom() | {"last_error": error} for key, error in sorted(self.missing.items())],
            "polls": self.polls,
            "waited_seconds": round(self.waited_seconds, 3),
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> LookupReport:
        """The inverse of `to_xcom`."""
        return cls(
            found=tuple(PayingCustomer.from_xcom(item) for item in value.get("found") or ()),
            missing={
                BillingKey.from_xcom(item): str(item.get("last_error") or "")
                for item in value.get("missing") or ()
            },
            polls=int(value.get("polls") or 0),
            waited_seconds=float(value.get("waited_seconds") or 0.0),
        )


# ---- extract and validate ------------------------------------------------------------------------


def _waits_for_its_lead(reject: RejectedRow) -> bool:
    """A conversion rejected only because its lead has not been synced yet (the leads DAG may not
    have run): worth reading again next run, unlike a row with missing fields."""
    return (
        reject.source_id is not None
        and bool(reject.failures)
        and all(f.field == Entity.LEAD.id_column and f.rule != PRESENT for f in reject.failures)
    )


def _without_still_waiting(
    frame: pd.DataFrame, window: Window, waiting: set[str], known_leads: set[str]
) -> pd.DataFrame:
    """Drop re-read conversions from outside the window whose lead is still not synced.

    They were rejected (and recorded) when they came in; they join a run again once their lead is
    synced, so a run's counts stay those of its window.
    """
    if not waiting or frame.empty:
        return frame
    in_window = pd.Series(True, index=frame.index)
    if not window.full_refresh:
        converted = pd.to_datetime(frame["converted_at"], utc=True)
        in_window = (converted >= pd.Timestamp(window.start)) & (converted < pd.Timestamp(window.end))
    keep = in_window | ~frame["lead_id"].isin(waiting) | frame["lead_id"].isin(known_leads)
    return frame.loc[keep].reset_index(drop=True)


def extract_and_validate_conversions(
    warehouse: Warehouse, settings: MergeSettings, data_source_uuid: str | None
) -> dict[str, Any]:
    """Extract the window's conversions (plus the ones an earlier run could not finish), validate them,
    stage valid rows and rejects.

    A conversion is valid only if its lead was synced by mogulflow into `data_source_uuid`.
    """
    ensure_tables(warehouse)
    run = settings.run
    frame = extract_entity(warehouse, Entity.CONVERSION, run.window, data_source_uuid=data_source_uuid)
    known = synced_ids(warehouse, Entity.LEAD, data_source_uuid) if data_source_uuid else set()
    if data_source_uuid:
        waiting = ids_with_status(warehouse, Entity.CONVERSION, data_source_uuid, (STATUS_WAITING,))
        frame = _without_still_waiting(frame, run.window, waiting, known)
    result = validate_conversions(frame, now=run.started_at, known_lead_ids=known)
    part = stage_validation_result(run, result)
    part["awaiting_lead"] = sorted({r.source_id for r in result.rejected if _waits_for_its_lead(r)})
    log.info(
        "conversions: extracted %d, valid %d, rejected %d%s",
        part["extracted"],
        part["valid"],
        part["rejected"],
        f": {part['rejects_by_rule']}" if part["rejected"] else "",
    )
    return {str(Entity.CONVERSION): part}


def record_conversion_rejects(
    warehouse: Warehouse,
    settings: MergeSettings,
    data_source_uuid: str | None,
    extract_report: Mapping[str, Any],
) -> dict[str, int]:
    """Write rejected conversions to `mogulflow_rejects`; mark those waiting for their lead for a re-read.

    The mark is a `waiting` conversion entry in the sync state, which `extract_conversions.sql` reads
    again once the lead is synced (a conversion already merged keeps its `merged` entry).
    """
    written = write_rejects(warehouse, settings.run, extract_report)
    awaiting = extract_report[str(Entity.CONVERSION)].get("awaiting_lead") or []
    if awaiting and data_source_uuid:
        state = load_state(warehouse, Entity.CONVERSION, data_source_uuid)
        now = datetime.now(UTC)
        entries = [
            StateEntry(
                Entity.CONVERSION,
                data_source_uuid,
                lead_id,
                None,
                None,
                {"reason": "lead not synced yet"},
                STATUS_WAITING,
                now,
                settings.run.run_id,
            )
            for lead_id in awaiting
            if (state.get(lead_id) is None or state[lead_id].status != STATUS_MERGED)
        ]
        save_state(warehouse, entries)
        log.warning(
            "%d conversion(s) name a lead mogulflow has not synced yet; the next run reads them again: %s",
            len(awaiting),
            awaiting[:SAMPLE_SIZE],
        )
    return written


def read_conversions(extract_report: Mapping[str, Any]) -> list[Conversion]:
    """The staged valid conversions of the run, one per lead."""
    frame = staging.read_frame(extract_report[str(Entity.CONVERSION)]["valid_path"])
    return [
        Conversion(
            str(row.lead_id),
            BillingKey(str(row.billing_data_source_uuid), str(row.billing_customer_external_id)),
        )
        for row in frame.itertuples(index=False)
    ]


def _is_done(conversion: Conversion, entry: StateEntry | None) -> bool:
    """Whether the sync state records this very conversion as merged."""
    if entry is None or entry.status != STATUS_MERGED:
        return False
    return dict(entry.payload or {}) == conversion.state_payload()


def keys_to_look_up(
    warehouse: Warehouse, data_source_uuid: str | None, extract_report: Mapping[str, Any]
) -> list[BillingKey]:
    """The paying customers the run needs: those of the valid conversions not merged yet."""
    conversions = read_conversions(extract_report)
    if not conversions or not data_source_uuid:
        return []
    state = load_state(warehouse, Entity.CONVERSION, data_source_uuid)
    return sorted({c.billing for c in conversions if not _is_done(c, state.get(c.lead_id))})


# ---- the wait ------------------------------------------------------------------------------------


async def look_up_paying_customers(
    client: Any, keys: Iterable[BillingKey]
) -> tuple[dict[BillingKey, PayingCustomer], dict[BillingKey, str]]:
    """One lookup of each key with an `AsyncChartMogulClient` (the client paces and bounds parallelism).

    Returns (found, errors): a key in neither was simply not there. A rejected API key raises.
    """
    keys = list(keys)

    async def find(key: BillingKey) -> Mapping[str, Any] | None:
        return await client.find_customer(key.data_source_uuid, key.external_id)

    answers = await asyncio.gather(*(find(key) for key in keys), return_exceptions=True)
    found: dict[BillingKey, PayingCustomer] = {}
    errors: dict[BillingKey, str] = {}
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, AuthenticationError):
            raise answer
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer
            errors[key] = str(answer) or type(answer).__name__
        elif answer is not None:
            found[key] = PayingCustomer.from_api(key, answer)
    return found, errors


async def wait_for_paying_customers(
    client: Any,
    keys: Iterable[BillingKey],
    *,
    interval: float,
    deadline: float,
    found: Iterable[PayingCustomer] = (),
    polls: int = 0,
    started_at: float | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> LookupReport:
    """Look the missing keys up every `interval` seconds until all are found or `deadline` (epoch
    seconds) passes; always looks at least once.

    `found`, `polls` and `started_at` (epoch seconds) carry what an earlier part of the same wait did.
    """
    started = clock() if started_at is None else started_at
    known = {customer.key: customer for customer in found}
    missing: dict[BillingKey, str] = {key: "" for key in keys if key not in known}
    while missing:
        hits, errors = await look_up_paying_customers(client, list(missing))
        polls += 1
        known.update(hits)
        missing = {key: errors.get(key, "") for key in missing if key not in hits}
        log.info("Paying customers: poll %d found %d, %d still missing", polls, len(hits), len(missing))
        remaining = deadline - clock()
        if not missing or remaining <= 0:
            break
        await sleep(min(interval, remaining))
    return LookupReport(
        found=tuple(known[key] for key in sorted(known)),
        missing=missing,
        polls=polls,
        waited_seconds=clock() - started,
    )


# ---- merge ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeOutcome:
    """How one conversion ended."""

    lead_id: str
    outcome: str  # MERGED, ALREADY_MERGED, NOT_FOUND, FAILED
    surviving_uuid: str | None = None
    message: str = ""


def _state_entries(
    conversion: Conversion,
    outcome: MergeOutcome,
    lead_entry: StateEntry | None,
    *,
    data_source_uuid: str,
    run_id: str,
) -> list[StateEntry]:
    """The sync-state rows that record an outcome.

    A merged conversion also re-points the lead's entry at the surviving customer (status `merged`),
    so that the leads DAG imports later trial invoices into it; the lead's hash and payload stay, so
    an unchanged lead is not sent again.
    """
    now = datetime.now(UTC)
    payload = conversion.state_payload()
    if outcome.outcome in (NOT_FOUND, FAILED):
        payload = payload | {"error": outcome.message}
        return [
            StateEntry(
                Entity.CONVERSION,
                data_source_uuid,
                conversion.lead_id,
                None,
                None,
                payload,
                STATUS_FAILED,
                now,
                run_id,
            )
        ]
    entries = [
        StateEntry(
            Entity.CONVERSION,
            data_source_uuid,
            conversion.lead_id,
            outcome.surviving_uuid,
            content_hash(payload),
            payload,
            STATUS_MERGED,
            now,
            run_id,
        )
    ]
    if lead_entry is None:
        entries.append(
            StateEntry(
                Entity.LEAD,
                data_source_uuid,
                conversion.lead_id,
                outcome.surviving_uuid,
                None,
                None,
                STATUS_MERGED,
                now,
                run_id,
            )
        )
    elif lead_entry.chartmogul_uuid != outcome.surviving_uuid or lead_entry.status != STATUS_MERGED:
        entries.append(
            replace(
                lead_entry,
                chartmogul_uuid=outcome.surviving_uuid,
                status=STATUS_MERGED,
                synced_at=now,
                run_id=run_id,
            )
        )
    return entries


def _merge_one(
    client: Any,
    conversion: Conversion,
    paying: PayingCustomer,
    lead_entry: StateEntry | None,
    *,
    data_source_uuid: str,
) -> MergeOutcome:
    """Merge one lead into its paying customer unless ChartMogul shows it merged already."""
    lead_id = conversion.lead_id
    if paying.holds(data_source_uuid, lead_id):
        return MergeOutcome(
            lead_id, ALREADY_MERGED, paying.uuid, "ChartMogul lists the lead on the paying customer"
        )
    if lead_entry is not None and lead_entry.status == STATUS_MERGED and lead_entry.chartmogul_uuid:
        if lead_entry.chartmogul_uuid == paying.uuid:
            return MergeOutcome(lead_id, ALREADY_MERGED, paying.uuid, "the sync state records the merge")
        return MergeOutcome(
            lead_id,
            FAILED,
            message=(
                f"lead {lead_id!r} was already merged into customer {lead_entry.chartmogul_uuid}, but the "
                f"conversion names paying customer {paying.key} ({paying.uuid}); unmerge it in ChartMogul "
                "or correct the conversions row"
            ),
        )
    lead_uuid = lead_entry.chartmogul_uuid if lead_entry is not None else None
    if lead_uuid is None:
        found = client.find_customer(data_source_uuid, lead_id)
        if found is None:
            return MergeOutcome(
                lead_id,
                FAILED,
                message=f"lead {lead_id!r} has no customer in data source {data_source_uuid}; "
                "chartmogul_leads_trials creates it, the next run retries",
            )
        lead_uuid = str(found["uuid"])
    if lead_uuid == paying.uuid:
        return MergeOutcome(
            lead_id, ALREADY_MERGED, paying.uuid, "the lead's customer is the paying customer"
        )
    try:
        client.merge_customers(lead_uuid, paying.uuid)
    except ChartMogulError as error:
        if isinstance(error, CircuitOpenError) or error.status not in (404, 422):
            raise
        # The lead's customer may be gone because it was merged (by us, with a lost answer, or by hand).
        current = client.find_customer(data_source_uuid, lead_id)
        if current is not None and str(current["uuid"]) == paying.uuid:
            return MergeOutcome(lead_id, ALREADY_MERGED, paying.uuid, "the lead had been merged already")
        raise
    return MergeOutcome(lead_id, MERGED, paying.uuid)


def merge_conversions(
    warehouse: Warehouse,
    client: Any,
    settings: MergeSettings,
    data_source_uuid: str | None,
    extract_report: Mapping[str, Any],
    lookup_report: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Merge every valid conversion's lead into its paying customer, once; record each in the sync state.

    A conversion the state records as merged is left alone without an API call. Each merge is
    checkpointed as soon as ChartMogul accepts it (202), so a retried task does not merge again.
    """
    conversions = read_conversions(extract_report)
    lookup = LookupReport.from_xcom(lookup_report or {})
    paying_by_key = {customer.key: customer for customer in lookup.found}
    run_id = settings.run.run_id
    outcomes: list[MergeOutcome] = []
    if conversions and not data_source_uuid:
        raise RuntimeError(
            "valid conversions but no ChartMogul data source uuid: find_data_source must run first"
        )
    conversion_state = load_state(warehouse, Entity.CONVERSION, data_source_uuid) if data_source_uuid else {}
    lead_state = load_state(warehouse, Entity.LEAD, data_source_uuid) if data_source_uuid else {}
    for conversion in conversions:
        ds = str(data_source_uuid)
        entry = conversion_state.get(conversion.lead_id)
        lead_entry = lead_state.get(conversion.lead_id)
        if _is_done(conversion, entry):
            outcomes.append(
                MergeOutcome(conversion.lead_id, ALREADY_MERGED, entry.chartmogul_uuid if entry else None)
            )
            continue  # nothing new to write
        paying = paying_by_key.get(conversion.billing)
        if paying is None:
            error = lookup.missing.get(conversion.billing)
            waited = f"after {lookup.polls} lookup(s) over {lookup.waited_seconds:.0f} s"
            outcome = MergeOutcome(
                conversion.lead_id,
                NOT_FOUND,
                message=f"paying customer {conversion.billing} not found {waited}"
                + (f"; last lookup error: {error}" if error else "")
                + "; the next run looks again",
            )
        else:
            try:
                outcome = _merge_one(client, conversion, paying, lead_entry, data_source_uuid=ds)
            except AuthenticationError:
                raise
            except Exception as error:
                outcome = MergeOutcome(
                    conversion.lead_id,
                    FAILED,
                    message=f"merging lead {conversion.lead_id!r} into {paying.key} ({paying.uuid}) failed: "
                    f"{error or type(error).__name__}",
                )
        outcomes.append(outcome)
        entries = _state_entries(conversion, outcome, lead_entry, data_source_uuid=ds, run_id=run_id)
        save_state(warehouse, entries)
        for saved in entries:
            if saved.entity == Entity.LEAD:
                lead_state[saved.external_id] = saved
    return _merge_report(outcomes, lookup)


def _merge_report(outcomes: Sequence[MergeOutcome], lookup: LookupReport) -> dict[str, Any]:
    tally = Counter(o.outcome for o in outcomes)
    problems = [o for o in outcomes if o.outcome in (NOT_FOUND, FAILED)]
    log.info(
        "conversions: merged %d, already merged %d, paying customer not found in time %d, failed %d",
        tally[MERGED],
        tally[ALREADY_MERGED],
        tally[NOT_FOUND],
        tally[FAILED],
    )
    for problem in problems[: SAMPLE_SIZE * 2]:
        log.warning("conversion of lead %r: %s", problem.lead_id, problem.message)
    return {
        "entity": str(Entity.CONVERSION),
        "created": tally[MERGED],
        "updated": 0,
        "unchanged": tally[ALREADY_MERGED],
        "failed": tally[NOT_FOUND] + tally[FAILED],
        "merged": tally[MERGED],
        "already_merged": tally[ALREADY_MERGED],
        "not_found": tally[NOT_FOUND],
        "api_errors": tally[FAILED],
        "lookup": {"polls": lookup.polls, "waited_seconds": lookup.waited_seconds},
        "errors": [
            {"external_id": o.lead_id, "outcome": o.outcome, "message": o.message} for o in problems[:50]
        ],
    }


# ---- the account ---------------------------------------------------------------------------------


def summarize_merge_run(
    settings: MergeSettings,
    extract_report: Mapping[str, Any] | None,
    merge_report: Mapping[str, Any] | None,
    *,
    task_failures: Mapping[str, str],
    finished_at: datetime | None = None,
) -> tuple[RunSummary, dict[str, Any]]:
    """Add up the run's conversions and decide its outcome, as `sync.summarize_run` does for leads.

    extracted = merged (created) + already merged (unchanged) + rejected + failed. Valid conversions
    whose merge step never ran count as failed. Any failed conversion fails the run (the next run
    retries it); rejects alone give `success_with_rejects`.
    """
    run = settings.run
    problems = list(task_failures.values())
    details: dict[str, Any] = {"rejects_by_rule": {}, "api_errors": {}}
    part = (extract_report or {}).get(str(Entity.CONVERSION))
    counts = EntityCounts()
    if part is None:
        if not problems:
            problems.append("extraction did not finish")
    else:
        if merge_report is None:
            done = {"created": 0, "updated": 0, "unchanged": 0, "failed": part["valid"]}
        else:
            done = {k: int(merge_report[k]) for k in ("created", "updated", "unchanged", "failed")}
            if merge_report.get("errors"):
                details["api_errors"][str(Entity.CONVERSION)] = merge_report["errors"][: SAMPLE_SIZE * 2]
            details["lookup"] = merge_report.get("lookup")
            if merge_report.get("not_found"):
                problems.append(
                    f"conversion: {merge_report['not_found']} paying customer(s) not found in time; "
                    "the next run looks again"
                )
            if merge_report.get("api_errors"):
                problems.append(
                    f"conversion: {merge_report['api_errors']} merge(s) failed; the next run retries"
                )
        counts = EntityCounts(extracted=part["extracted"], rejected=part["rejected"], **done)
        if counts.accounted != counts.extracted:
            problems.append(
                f"conversion: counts do not add up: extracted {counts.extracted} "
                f"but {counts.accounted} accounted for"
            )
        if part["rejects_by_rule"]:
            details["rejects_by_rule"][str(Entity.CONVERSION)] = part["rejects_by_rule"]
    if problems:
        outcome = "failed"
    elif counts.rejected:
        outcome = "success_with_rejects"
    else:
        outcome = "success"
    message = (
        "; ".join(problems)
        if problems
        else (
            f"{counts.rejected} conversions rejected: see mogulflow_rejects"
            if counts.rejected
            else "all conversions merged"
        )
    )
    summary = RunSummary(
        run_id=run.run_id,
        dag_id=run.dag_id,
        window=run.window,
        started_at=run.started_at,
        finished_at=finished_at or datetime.now(UTC),
        dry_run=False,
        outcome=outcome,
        counts={Entity.CONVERSION: counts},
        message=message,
    )
    return summary, details
