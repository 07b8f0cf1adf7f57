"""Merge: merge each converted lead into its paying customer, once, and record it.

The steps of `chartmogul_merge_converted_leads`: extract + validate (`mogulflow.merge.conversions`) →
record rejects (`mogulflow.record.rejects`) → find the paying customers, waiting for the ones that do not
exist yet (`mogulflow.merge.paying_customers`) → merge (here) → record the run (`mogulflow.record.account`).
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.errors import AuthenticationError, ChartMogulError, CircuitOpenError
from mogulflow.chartmogul.shapes import describe_customer, is_merged
from mogulflow.load.confirm import HeldObjects, read_held
from mogulflow.merge.conversions import Conversion, read_conversions
from mogulflow.merge.paying_customers import LookupReport, PayingCustomer
from mogulflow.values.constants import ERRORS_KEPT, SAMPLE_SIZE
from mogulflow.values.entities import Entity
from mogulflow.values.payload_hash import content_hash
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.run_summary import RowError
from mogulflow.values.step_reports import ExtractReport, LoadReport, LookupStats
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus, count_state, load_state, save_state

log = logging.getLogger(__name__)


class MergeKind(enum.StrEnum):
    """How one valid conversion ended; the run's conversions_* columns count them."""

    MERGED = "merged"  # conversions_created
    ALREADY_MERGED = "already_merged"  # conversions_unchanged
    NOT_FOUND = "not_found"  # conversions_failed: the paying customer did not appear in time
    FAILED = "failed"  # conversions_failed: API error, lead customer missing, lead merged elsewhere


@dataclass(frozen=True)
class MergeOutcome:
    """How one conversion ended."""

    lead_id: str
    kind: MergeKind
    surviving_uuid: str | None = None
    message: str = ""
    # Set when ChartMogul had merged the lead's customer before this DAG did: the customer it holds.
    merged_into: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the next run must try this conversion again."""
        return self.kind in (MergeKind.NOT_FOUND, MergeKind.FAILED)


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
    payload: dict[str, str] = conversion.state_payload()
    if outcome.merged_into is not None:
        payload["merged_into"] = outcome.merged_into  # what ChartMogul had merged the lead into
    common = {
        "data_source_uuid": data_source_uuid,
        "external_id": conversion.lead_id,
        "synced_at": now,
        "run_id": run_id,
    }
    if outcome.failed:
        return [
            StateEntry(
                entity=Entity.CONVERSION,
                status=SyncStatus.FAILED,
                payload=payload | {"error": outcome.message},
                **common,
            )
        ]
    entries = [
        StateEntry(
            entity=Entity.CONVERSION,
            status=SyncStatus.MERGED,
            chartmogul_uuid=outcome.surviving_uuid,
            content_hash=content_hash(payload),
            payload=payload,
            **common,
        )
    ]
    if lead_entry is None:
        entries.append(
            StateEntry(
                entity=Entity.LEAD, status=SyncStatus.MERGED, chartmogul_uuid=outcome.surviving_uuid, **common
            )
        )
    elif lead_entry.chartmogul_uuid != outcome.surviving_uuid or lead_entry.status is not SyncStatus.MERGED:
        entries.append(
            replace(
                lead_entry,
                chartmogul_uuid=outcome.surviving_uuid,
                status=SyncStatus.MERGED,
                synced_at=now,
                run_id=run_id,
            )
        )
    return entries


def _merge_one(
    client: ChartMogulClient,
    conversion: Conversion,
    paying: PayingCustomer,
    lead_entry: StateEntry | None,
    held: HeldObjects,
    *,
    data_source_uuid: str,
) -> MergeOutcome:
    """Merge one lead into its paying customer unless ChartMogul shows it merged already.

    The lead's customer is what ChartMogul holds under its external id now (`held`), never the uuid
    the sync state remembers: ChartMogul may have merged it on its own (matching external ids or
    domains), into the paying customer (done) or into another one (failed, with both named).
    """
    lead_id = conversion.lead_id
    if paying.holds(data_source_uuid, lead_id):
        return MergeOutcome(
            lead_id,
            MergeKind.ALREADY_MERGED,
            paying.uuid,
            "ChartMogul lists the lead on the paying customer",
            merged_into=paying.describe(),
        )
    if lead_entry is not None and lead_entry.status is SyncStatus.MERGED and lead_entry.chartmogul_uuid:
        if lead_entry.chartmogul_uuid == paying.uuid:
            return MergeOutcome(
                lead_id, MergeKind.ALREADY_MERGED, paying.uuid, "the sync state records the merge"
            )
        return MergeOutcome(
            lead_id,
            MergeKind.FAILED,
            message=(
                f"lead {lead_id!r} was already merged into customer {lead_entry.chartmogul_uuid}, but the "
                f"conversion names paying customer {paying.key} ({paying.uuid}); unmerge it in ChartMogul "
                "or correct the conversions row"
            ),
        )
    if lead_id in held.unknown:
        error = held.unknown[lead_id]
        raise RuntimeError(f"could not read lead {lead_id!r}'s customer in ChartMogul: {error}")
    current = held.get(lead_id)
    if current is None:
        return MergeOutcome(
            lead_id,
            MergeKind.FAILED,
            message=f"lead {lead_id!r} has no customer in data source {data_source_uuid}; "
            "chartmogul_leads_trials creates it, the next run retries",
        )
    if str(current["uuid"]) == paying.uuid:
        return MergeOutcome(
            lead_id,
            MergeKind.ALREADY_MERGED,
            paying.uuid,
            "ChartMogul had merged the lead into the paying customer already",
            merged_into=describe_customer(current),
        )
    if is_merged(current):
        return MergeOutcome(
            lead_id,
            MergeKind.FAILED,
            message=(
                f"lead {lead_id!r} was merged in ChartMogul (by its automatic merging, or by hand) into "
                f"customer {describe_customer(current)}, not into the paying customer {paying.key} "
                f"({paying.uuid}); merge that customer into the paying one in ChartMogul, or correct the "
                "conversions row"
            ),
            merged_into=describe_customer(current),
        )
    lead_uuid = str(current["uuid"])
    try:
        client.merge_customers(lead_uuid, paying.uuid)
    except ChartMogulError as error:
        if isinstance(error, CircuitOpenError) or error.status not in (404, 422):
            raise
        # The lead's customer may be gone because it was merged (by us, with a lost answer, or by hand).
        after = client.find_customer(data_source_uuid, lead_id)
        if after is not None and str(after["uuid"]) == paying.uuid:
            return MergeOutcome(
                lead_id, MergeKind.ALREADY_MERGED, paying.uuid, "the lead had been merged already"
            )
        raise
    return MergeOutcome(lead_id, MergeKind.MERGED, paying.uuid)


def _not_found(conversion: Conversion, lookup: LookupReport) -> MergeOutcome:
    error = lookup.missing.get(conversion.billing)
    waited = f"after {lookup.polls} lookup(s) over {lookup.waited_seconds:.0f} s"
    return MergeOutcome(
        conversion.lead_id,
        MergeKind.NOT_FOUND,
        message=f"paying customer {conversion.billing} not found {waited}"
        + (f"; last lookup error: {error}" if error else "")
        + "; the next run looks again",
    )


def merge_conversions(
    warehouse: Warehouse,
    client: ChartMogulClient,
    settings: RunSettings,
    data_source_uuid: str | None,
    extract: ExtractReport,
    lookup: LookupReport,
) -> LoadReport:
    """Merge every valid conversion's lead into its paying customer, once; record each in the sync state.

    A conversion the state records as merged is left alone without an API call. Each merge is
    checkpointed as soon as ChartMogul accepts it (202), so a retried task does not merge again.
    """
    conversions = read_conversions(warehouse, extract[Entity.CONVERSION])
    paying_by_key = {customer.key: customer for customer in lookup.found}
    outcomes: list[MergeOutcome] = []
    if conversions and not data_source_uuid:
        raise RuntimeError(
            "valid conversions but no ChartMogul data source uuid: find_data_source must run first"
        )
    ds = str(data_source_uuid)
    # Only the state of this run's leads: never the whole account's (a million synced customers).
    lead_ids = [c.lead_id for c in conversions]
    conversion_state = load_state(warehouse, Entity.CONVERSION, ds, lead_ids) if data_source_uuid else {}
    lead_state = load_state(warehouse, Entity.LEAD, ds, lead_ids) if data_source_uuid else {}
    # What ChartMogul holds under each lead to merge now: a merge never acts on a remembered uuid.
    to_merge = [
        c.lead_id
        for c in conversions
        if not c.is_done(conversion_state.get(c.lead_id)) and c.billing in paying_by_key
    ]
    held = (
        read_held(client, Entity.LEAD, ds, to_merge, known_size=count_state(warehouse, Entity.LEAD, ds))
        if to_merge
        else None
    )
    for conversion in conversions:
        entry = conversion_state.get(conversion.lead_id)
        lead_entry = lead_state.get(conversion.lead_id)
        if conversion.is_done(entry):
            uuid = entry.chartmogul_uuid if entry else None
            outcomes.append(MergeOutcome(conversion.lead_id, MergeKind.ALREADY_MERGED, uuid))
            continue  # nothing new to write
        paying = paying_by_key.get(conversion.billing)
        if paying is None:
            outcome = _not_found(conversion, lookup)
        else:
            try:
                outcome = _merge_one(
                    client, conversion, paying, lead_entry, held or HeldObjects(), data_source_uuid=ds
                )
            except AuthenticationError:
                raise
            except Exception as error:
                outcome = MergeOutcome(
                    conversion.lead_id,
                    MergeKind.FAILED,
                    message=f"merging lead {conversion.lead_id!r} into {paying.key} ({paying.uuid}) failed: "
                    f"{error or type(error).__name__}",
                )
        outcomes.append(outcome)
        entries = _state_entries(conversion, outcome, lead_entry, data_source_uuid=ds, run_id=settings.run_id)
        save_state(warehouse, entries)
        for saved in entries:
            if saved.entity == Entity.LEAD:
                lead_state[saved.external_id] = saved
    return _merge_report(outcomes, lookup)


def _merge_report(outcomes: Sequence[MergeOutcome], lookup: LookupReport) -> LoadReport:
    tally = Counter(o.kind for o in outcomes)
    problems = [o for o in outcomes if o.failed]
    log.info(
        "conversions: merged %d, already merged %d, paying customer not found in time %d, failed %d",
        tally[MergeKind.MERGED],
        tally[MergeKind.ALREADY_MERGED],
        tally[MergeKind.NOT_FOUND],
        tally[MergeKind.FAILED],
    )
    for problem in problems[: SAMPLE_SIZE * 2]:
        log.warning("conversion of lead %r: %s", problem.lead_id, problem.message)
    sentences = []
    if tally[MergeKind.NOT_FOUND]:
        sentences.append(
            f"conversion: {tally[MergeKind.NOT_FOUND]} paying customer(s) not found in time; "
            "the next run looks again"
        )
    if tally[MergeKind.FAILED]:
        sentences.append(f"conversion: {tally[MergeKind.FAILED]} merge(s) failed; the next run retries")
    return LoadReport(
        Entity.CONVERSION,
        created=tally[MergeKind.MERGED],
        unchanged=tally[MergeKind.ALREADY_MERGED],
        failed=tally[MergeKind.NOT_FOUND] + tally[MergeKind.FAILED],
        errors=tuple(RowError(Entity.CONVERSION, o.lead_id, o.message) for o in problems[:ERRORS_KEPT]),
        problems=tuple(sentences),
        lookup=LookupStats(polls=lookup.polls, waited_seconds=lookup.waited_seconds),
    )
