"""Load: carry out a `SyncPlan` through the ChartMogul client, one object (or one customer) at a time.

Row-level problems (a 422 for one customer, a write that outlived its retries) are data: they end
as `failed` rows in the report and in the sync state, and the next run retries them. Only a
batch-level failure (the client's circuit breaker opening, a rejected API key) stops a load
early, and even then every confirmed write has been handed to the checkpoint and every remaining
row is counted as failed. The loader never reads the sync state: the plan carries what it needs,
and confirmed writes leave through `checkpoint` (which `mogulflow.warehouse.sync_state` provides).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient, WriteOutcome
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
from mogulflow.values.entities import Entity
from mogulflow.values.step_reports import LoadReport

log = logging.getLogger(__name__)


def _object_writes(
    client: ChartMogulClient, entity: Entity
) -> tuple[Callable[[dict[str, Any]], WriteOutcome], Callable[[str, dict[str, Any]], object]]:
    """The client's create-or-adopt and PATCH calls for customers or plans."""
    if entity is Entity.PLAN:
        return client.upsert_plan, client.update_plan
    return client.upsert_customer, client.update_customer


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
    """Create new customers or plans (idempotently), PATCH changed ones, checkpoint confirmed writes."""
    target = RowTarget(plan.entity, data_source_uuid, run_id)
    upsert, update = _object_writes(client, plan.entity)
    tally = Tally.of_plan(plan)

    def create(item: PlannedCreate) -> WriteResult:
        answer = upsert(item.payload.to_api(data_source_uuid))
        outcome = (
            RowOutcome.CREATED
            if answer.created
            else (RowOutcome.UPDATED if answer.updated else RowOutcome.UNCHANGED)
        )
        return target.confirmed(
            outcome, item.payload, uuid=answer.uuid, digest=item.content_hash, version=item.source_updated_at
        )

    def patch(item: PlannedUpdate) -> WriteResult:
        uuid = item.chartmogul_uuid
        if uuid is None:
            # Written by a bulk import, which does not answer with uuids: upsert finds it by external id.
            uuid = upsert(item.payload.to_api(data_source_uuid)).uuid
        else:
            update(uuid, dict(item.changed_fields))
        return target.confirmed(
            RowOutcome.UPDATED,
            item.payload,
            uuid=uuid,
            digest=item.content_hash,
            version=item.source_updated_at,
            status=item.status,
        )

    def guarded(call: Callable[[], WriteResult], payload: Payload, uuid: str | None) -> Write:
        def run() -> list[WriteResult]:
            try:
                return [call()]
            except LOAD_STOPPERS:
                raise
            except Exception as error:
                return [target.failed(payload.external_id, error, uuid=uuid, intended=payload)]

        return [payload.external_id], run

    writes = [guarded(lambda i=item: create(i), item.payload, None) for item in plan.creates]
    writes += [guarded(lambda i=item: patch(i), item.payload, item.chartmogul_uuid) for item in plan.updates]
    aborted = run_writes(
        tally, target, writes, checkpoint=checkpoint, max_workers=max_workers, checkpoint_rows=checkpoint_rows
    )
    return tally.report(aborted)
