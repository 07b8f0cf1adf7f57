"""Planning: what the load will create, update (with which fields) or leave alone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from mogulflow.plan.sync_plan import plan_sync
from mogulflow.transform.payloads import CustomerPayload
from mogulflow.values.entities import Entity
from mogulflow.values.payload_hash import content_hash
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus

STATUS_SYNCED, STATUS_FAILED, STATUS_MERGED = SyncStatus.SYNCED, SyncStatus.FAILED, SyncStatus.MERGED

NOW = datetime(2025, 5, 1, tzinfo=UTC)


def customer(**changes) -> CustomerPayload:
    fields = {
        "external_id": "L1",
        "name": "Acme",
        "email": "ops@acme.example",
        "country": "DE",
        "state": None,
        "city": "Berlin",
        "zip": None,
        "lead_created_at": None,
        "free_trial_started_at": None,
    }
    return CustomerPayload(**{**fields, **changes})


def state_of(
    payload: CustomerPayload, *, status: SyncStatus = STATUS_SYNCED, uuid: str | None = "cus_1"
) -> dict:
    fields = payload.fields()
    digest = None if status == STATUS_FAILED else content_hash(fields)  # a failed write keeps no hash
    entry = StateEntry(
        entity=Entity.LEAD,
        data_source_uuid="ds_1",
        external_id=payload.external_id,
        chartmogul_uuid=uuid,
        content_hash=digest,
        payload=fields,
        status=status,
        synced_at=NOW,
        run_id="r0",
    )
    return {payload.external_id: entry}


def test_new_payload_is_created():
    plan = plan_sync(Entity.LEAD, [customer()], {})
    assert [c.payload.external_id for c in plan.creates] == ["L1"]


def test_unchanged_payload_is_left_alone():
    plan = plan_sync(Entity.LEAD, [customer()], state_of(customer()))
    assert plan.unchanged == ("L1",) and not plan.creates and not plan.updates


def test_changed_payload_updates_only_the_changed_fields():
    plan = plan_sync(Entity.LEAD, [customer(email="new@acme.example")], state_of(customer()))
    [update] = plan.updates
    assert update.changed_fields == {"email": "new@acme.example"}
    assert update.chartmogul_uuid == "cus_1"


def test_failed_update_is_sent_whole_even_when_unchanged():
    plan = plan_sync(Entity.LEAD, [customer()], state_of(customer(), status=STATUS_FAILED))
    [update] = plan.updates
    assert update.changed_fields == customer().fields()


def test_failed_create_without_uuid_is_created_again():
    plan = plan_sync(Entity.LEAD, [customer()], state_of(customer(), status=STATUS_FAILED, uuid=None))
    assert len(plan.creates) == 1


def test_merged_lead_sends_only_its_dates_to_the_surviving_customer():
    changed = customer(name="Acme Renamed", lead_created_at=datetime(2025, 1, 2, tzinfo=UTC))
    plan = plan_sync(
        Entity.LEAD,
        [changed],
        state_of(customer(), status=STATUS_MERGED),
        fields_after_merge=("lead_created_at", "free_trial_started_at"),
    )
    [update] = plan.updates
    assert update.changed_fields == {"lead_created_at": "2025-01-02T00:00:00Z"}
    assert update.status == STATUS_MERGED


def test_merged_lead_with_only_profile_changes_is_left_alone():
    plan = plan_sync(
        Entity.LEAD,
        [customer(name="Acme Renamed")],
        state_of(customer(), status=STATUS_MERGED),
        fields_after_merge=("lead_created_at", "free_trial_started_at"),
    )
    assert plan.unchanged == ("L1",)


def test_older_version_of_a_synced_row_is_left_alone():
    synced = state_of(customer(name="Acme GmbH"))
    entry = synced["L1"]
    synced["L1"] = dataclasses.replace(entry, source_updated_at=datetime(2025, 1, 10, tzinfo=UTC))
    plan = plan_sync(
        Entity.LEAD,
        [customer(name="Acme (old name)")],
        synced,
        versions={"L1": datetime(2025, 1, 1, tzinfo=UTC)},
    )
    assert plan.unchanged == ("L1",)


def test_newer_version_of_a_synced_row_is_updated():
    synced = state_of(customer(name="Acme GmbH"))
    entry = synced["L1"]
    synced["L1"] = dataclasses.replace(entry, source_updated_at=datetime(2025, 1, 10, tzinfo=UTC))
    plan = plan_sync(
        Entity.LEAD, [customer(name="Acme AG")], synced, versions={"L1": datetime(2025, 2, 1, tzinfo=UTC)}
    )
    assert [u.changed_fields for u in plan.updates] == [{"name": "Acme AG"}]
