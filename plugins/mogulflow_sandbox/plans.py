"""The plans of the sandbox account, by uuid and by (data source, external id)."""

from __future__ import annotations

import uuid
from typing import Any

from mogulflow_sandbox.api_errors import PLAN_NOT_FOUND_MESSAGE, bare_error, field_errors
from mogulflow_sandbox.data_sources import DataSourceStore
from mogulflow_sandbox.ids import RunningNumber, new_uuid
from mogulflow_sandbox.pagination import PageRequest, page_body, paginate
from mogulflow_sandbox.record_store import RecordStore
from mogulflow_sandbox.records import Identity, PlanRecord
from mogulflow_sandbox.request_log import note_change
from mogulflow_sandbox.rules import PLAN_EXTERNAL_ID_TAKEN, is_blank, plan_field_errors

PLAN_CHANGEABLE_FIELDS = ("name", "interval_count", "interval_unit")


class PlanStore(RecordStore[PlanRecord]):
    """The plans of every data source."""

    record_type = PlanRecord

    def __init__(self, data_sources: DataSourceStore, positions: RunningNumber) -> None:
        super().__init__()
        self._data_sources = data_sources
        # shared with the invoices: one creation order, the position list cursors point at
        self._positions = positions
        self._by_external_id: dict[Identity, str] = {}

    def create(self, body: dict[str, Any]) -> PlanRecord:
        """A new plan from a create body; 422 family A for bad fields or a taken external id."""
        data_source_uuid = body.get("data_source_uuid")
        errors = plan_field_errors(body, self._data_sources.exists(data_source_uuid))
        if errors:
            raise field_errors(errors)
        assert isinstance(data_source_uuid, str)
        external_id = body.get("external_id")
        if is_blank(external_id):
            external_id = str(uuid.uuid4())  # the API generates one when none is given
        if (data_source_uuid, external_id) in self._by_external_id:
            raise field_errors({"external_id": PLAN_EXTERNAL_ID_TAKEN})
        plan = PlanRecord(
            uuid=new_uuid("pl"),
            data_source_uuid=data_source_uuid,
            external_id=str(external_id),
            name=body["name"],
            interval_count=body["interval_count"],
            interval_unit=body["interval_unit"],
            seq=self._positions.take(),
        )
        self._keep(plan)
        note_change("plan", plan.data_source_uuid, plan.external_id, "created")
        return plan

    def update(self, plan: PlanRecord, body: dict[str, Any], *, partial: bool) -> None:
        """Change name and interval (those present when ``partial``); 422 family A for bad values."""
        errors = plan_field_errors(body, True, partial=partial)
        if errors:
            raise field_errors(errors)
        for name in PLAN_CHANGEABLE_FIELDS:
            if name in body:
                setattr(plan, name, body[name])
        note_change("plan", plan.data_source_uuid, plan.external_id, "updated")

    def upsert(self, data_source_uuid: str, raw: dict[str, Any]) -> bool:
        """Create the plan, or update name and interval when (data source, external id) exists.

        True when it created one.
        """
        existing = self._by_external_id.get((data_source_uuid, str(raw.get("external_id"))))
        if existing is None:
            self.create({**raw, "data_source_uuid": data_source_uuid})
            return True
        # a JSON import restates the whole plan, so every field is required
        self.update(self._records[existing], raw, partial=False)
        return False

    def get(self, plan_uuid: str) -> PlanRecord:
        """The plan; unknown → 404 ``{"error": "Plan not found"}``."""
        return self._get(plan_uuid, lambda: bare_error(404, PLAN_NOT_FOUND_MESSAGE))

    def uuid_for(self, data_source_uuid: str, external_id: str) -> str | None:
        """The uuid of the plan (data source, external id), or None."""
        return self._by_external_id.get((data_source_uuid, external_id))

    def remove(self, plan: PlanRecord) -> None:
        """Forget the plan."""
        note_change("plan", plan.data_source_uuid, plan.external_id, "deleted")
        del self._records[plan.uuid]
        self._by_external_id.pop((plan.data_source_uuid, plan.external_id), None)

    def remove_data_source(self, data_source_uuid: str) -> None:
        """Forget every plan of the data source."""
        for plan in self.matching(data_source_uuid):
            self.remove(plan)

    def matching(self, data_source_uuid: str | None = None) -> list[PlanRecord]:
        """Every plan (of one data source), in creation order."""
        return [plan for plan in self._records.values() if data_source_uuid in (None, plan.data_source_uuid)]

    def list_page(
        self,
        request: PageRequest,
        data_source_uuid: str | None,
        external_id: str | None,
        system: str | None,
    ) -> dict[str, Any]:
        """``GET /v1/plans``: filtered, in creation order, one cursor page under ``plans``."""
        if data_source_uuid is not None and external_id is not None:
            found = self._by_external_id.get((data_source_uuid, external_id))
            candidates = [self._records[found]] if found else []
        else:
            candidates = [
                plan
                for plan in self.matching(data_source_uuid)
                if external_id is None or plan.external_id == external_id
            ]
        if system is not None:
            candidates = [p for p in candidates if self._data_sources.has_system(p.data_source_uuid, system)]
        page = paginate(candidates, lambda plan: plan.seq, request)
        return page_body("plans", [plan.to_api() for plan in page.items], page, request)

    def to_api(self) -> list[dict[str, Any]]:
        """Every plan in API form."""
        return [plan.to_api() for plan in self._records.values()]

    def _keep(self, record: PlanRecord) -> None:
        self._records[record.uuid] = record
        self._by_external_id[(record.data_source_uuid, record.external_id)] = record.uuid
