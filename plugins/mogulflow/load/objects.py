"""Load: carry out a `SyncPlan` of customers or plans through the ChartMogul client, one object at a time.

Every write acts on what ChartMogul holds now, and every count follows ChartMogul's answer:

- a changed row is first confirmed (`mogulflow.load.confirm`: what the data source holds under its
  external id, read in bulk where that is cheaper); of the fields the plan changes (a row marked for
  re-sending: all of them), those that differ from *that* object are PATCHed by *its* uuid (a field
  edited in ChartMogul that the warehouse did not change is left alone); none differs → unchanged,
  no write; nothing held → created again;
- a new row is POSTed; "already exists" is not success: the object found under the external id is
  compared with the one meant (`mogulflow.values.field_equality`) and left alone (unchanged) or
  PATCHed (updated);
- a customer that holds other records too (merged, by ChartMogul or by a person) gets only the lead's
  dates (`LEAD_DATE_FIELDS`): its name, e-mail and address are the merged customer's;
- ChartMogul's answer is checked against what was sent: a field it did not take fails the row, with
  both values in the reason.

Row-level problems are data: they end as `failed` rows in the report and in the sync state, and the
next run retries them. Only a batch-level failure (the circuit breaker opening, a rejected API key)
stops a load early. Confirmed writes leave through `checkpoint`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.errors import ValidationError
from mogulflow.chartmogul.flows import CUSTOMERS, PLANS, ObjectKind
from mogulflow.chartmogul.shapes import describe_customer, is_merged
from mogulflow.load.confirm import HeldObjects, read_held
from mogulflow.load.writes import (
    DEFAULT_CHECKPOINT_ROWS,
    LOAD_STOPPERS,
    Checkpoint,
    RowOutcome,
    RowTarget,
    Tally,
    Write,
    WriteResult,
    run_writes,
)
from mogulflow.plan.sync_plan import Payload, PlannedCreate, PlannedUpdate, SyncPlan
from mogulflow.values.entities import LEAD_DATE_FIELDS, Entity
from mogulflow.values.field_equality import changed_fields
from mogulflow.values.run_summary import RowError
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse.sync_state import SyncStatus

log = logging.getLogger(__name__)

Entry = dict[str, Any]


@dataclass(frozen=True)
class ObjectCalls:
    """The client's calls for one kind of object: create (raises on "already exists"), find, PATCH."""

    kind: ObjectKind
    create: Callable[[Mapping[str, Any]], Entry]
    find: Callable[[str, str], Entry | None]
    update: Callable[[str, Mapping[str, Any]], Entry]


def object_calls(client: ChartMogulClient, entity: Entity) -> ObjectCalls:
    """The client's calls for customers or plans."""
    if entity is Entity.PLAN:
        return ObjectCalls(PLANS, client.create_plan, client.find_plan, client.update_plan)
    return ObjectCalls(CUSTOMERS, client.create_customer, client.find_customer, client.update_customer)


@dataclass(frozen=True)
class _Row:
    """One planned row as the load carries it out: what was meant, the fields to bring in line (the
    plan's changed fields), its hash, version and status after."""

    payload: Payload
    fields: Mapping[str, Any]
    digest: str
    version: datetime | None
    status: SyncStatus = SyncStatus.SYNCED


def load_objects(
    client: ChartMogulClient,
    plan: SyncPlan,
    *,
    data_source_uuid: str,
    run_id: str,
    checkpoint: Checkpoint,
    max_workers: int = 4,
    checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
) -> LoadReport:
    """Create new customers or plans, bring changed ones in line with what ChartMogul holds now."""
    target = RowTarget(plan.entity, data_source_uuid, run_id)
    calls = object_calls(client, plan.entity)
    tally = Tally.of_plan(plan)
    # Changed rows act on what ChartMogul holds now, never on the uuid the sync state remembers.
    held = read_held(
        client,
        plan.entity,
        data_source_uuid,
        (item.payload.external_id for item in plan.updates),
        known_size=plan.state_size,
        max_workers=max_workers,
    )
    writer = _ObjectWriter(calls, target, data_source_uuid)

    def guarded(call: Callable[[], WriteResult], payload: Payload, uuid: str | None) -> Write:
        def run() -> list[WriteResult]:
            try:
                return [call()]
            except LOAD_STOPPERS:
                raise
            except Exception as error:
                return [target.failed(payload.external_id, error, uuid=uuid, intended=payload)]

        return [payload.external_id], run

    writes = [guarded(lambda c=item: writer.create(_new_row(c)), item.payload, None) for item in plan.creates]
    writes += [
        guarded(lambda u=item: writer.update(_row_of(u), held), item.payload, item.chartmogul_uuid)
        for item in plan.updates
    ]
    aborted = run_writes(
        tally, target, writes, checkpoint=checkpoint, max_workers=max_workers, checkpoint_rows=checkpoint_rows
    )
    return tally.report(aborted)


def _new_row(item: PlannedCreate) -> _Row:
    return _Row(item.payload, item.payload.fields(), item.content_hash, item.source_updated_at)


def _row_of(item: PlannedUpdate) -> _Row:
    return _Row(item.payload, item.changed_fields, item.content_hash, item.source_updated_at, item.status)


@dataclass(frozen=True)
class _ObjectWriter:
    """The writes of one load: each ends in exactly one outcome, the one ChartMogul's answer shows."""

    calls: ObjectCalls
    target: RowTarget
    data_source_uuid: str

    def create(self, row: _Row) -> WriteResult:
        """POST the object; on "already exists", settle with the one ChartMogul holds."""
        try:
            body = self.calls.create(row.payload.to_api(self.data_source_uuid))
        except ValidationError as error:
            if not error.already_exists:
                raise
            held = self.calls.find(self.data_source_uuid, row.payload.external_id)
            if held is None:
                raise  # said "exists" but cannot be found: the API's own words are the reason
            return self.settle(dataclasses.replace(row, fields=row.payload.fields()), held)
        return self.confirmed(RowOutcome.CREATED, row, body, sent=self.owned(row, body))

    def update(self, row: _Row, held: HeldObjects) -> WriteResult:
        """Bring a changed row in line with what ChartMogul holds under its external id now."""
        external_id = row.payload.external_id
        if external_id in held.unknown:
            error = held.unknown[external_id]
            return self.target.failed(
                external_id,
                RuntimeError(f"could not read what ChartMogul holds under {external_id!r}: {error}"),
                intended=row.payload,
            )
        current = held.get(external_id)
        if current is None:
            log.info("%s %s is gone from ChartMogul: creating it again.", self.target.entity, external_id)
            return self.create(dataclasses.replace(row, fields=row.payload.fields()))
        return self.settle(row, current)

    def settle(self, row: _Row, held: Entry) -> WriteResult:
        """Compare the held object with the one meant: unchanged, or PATCH what differs by its uuid."""
        owned = self.owned(row, held)
        changes = changed_fields(held, owned)
        if not changes:
            return self.confirmed(RowOutcome.UNCHANGED, row, held, sent={})
        answer = self.calls.update(str(held["uuid"]), changes)
        return self.confirmed(RowOutcome.UPDATED, row, answer or held, sent=changes)

    def owned(self, row: _Row, held: Entry) -> dict[str, Any]:
        """The row's fields that are mogulflow's to set on `held` (on a merged customer: the lead's dates)."""
        if self.target.entity is Entity.LEAD and is_merged(held):
            log.info(
                "lead %s belongs to the merged customer %s: only its dates are sent.",
                row.payload.external_id,
                describe_customer(held),
            )
            return {name: value for name, value in row.fields.items() if name in LEAD_DATE_FIELDS}
        return dict(row.fields)

    def confirmed(
        self, outcome: RowOutcome, row: _Row, answer: Entry, *, sent: Mapping[str, Any]
    ) -> WriteResult:
        """The row's outcome, once ChartMogul's answer shows it holds every field sent as sent."""
        refused = changed_fields(answer, sent)
        if refused:
            found = ", ".join(f"{k}={answer.get(k)!r} (sent {v!r})" for k, v in refused.items())
            problem = RowError(
                self.target.entity,
                row.payload.external_id,
                f"ChartMogul's answer does not hold what was sent: {found}",
                None,
                retriable=True,
            )
            return self.target.refused(problem, uuid=answer.get("uuid"), intended=row.payload)
        status = SyncStatus.MERGED if row.status is SyncStatus.MERGED else SyncStatus.SYNCED
        uuid = str(answer["uuid"])
        return self.target.confirmed(
            outcome, row.payload, uuid=uuid, digest=row.digest, version=row.version, status=status
        )
