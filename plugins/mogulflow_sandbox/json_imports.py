"""JSON (bulk) imports: queued on ``POST``, applied through `bulk` once the import delay has passed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from mogulflow_sandbox import bulk
from mogulflow_sandbox.api_errors import bare_error, field_errors
from mogulflow_sandbox.data_sources import DataSourceStore
from mogulflow_sandbox.due_work import WorkQueue
from mogulflow_sandbox.record_store import RecordStore
from mogulflow_sandbox.records import Identity, JsonImportRecord
from mogulflow_sandbox.settings import SandboxSettings
from mogulflow_sandbox.timestamps import utc_now


class JsonImportStore(RecordStore[JsonImportRecord]):
    """Every JSON import, by id and by (data source, external id); pending ones wait in the work queue."""

    record_type = JsonImportRecord

    def __init__(
        self,
        data_sources: DataSourceStore,
        settings: SandboxSettings,
        clock: Callable[[], float],
        due_work: WorkQueue,
    ) -> None:
        super().__init__()
        self._data_sources = data_sources
        self._settings = settings
        self._clock = clock
        self._due_work = due_work
        self._by_external_id: dict[Identity, str] = {}

    def create(self, data_source_uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/data_sources/{uuid}/json_imports``: queue it (201, status "queued")."""
        self._data_sources.get(data_source_uuid)
        bulk.check_payload_shape(body)
        external_id = body.get("external_id")
        if external_id is not None and (data_source_uuid, str(external_id)) in self._by_external_id:
            raise field_errors({"external_id": "has already been taken"})
        now = self._clock()
        delay = self._settings.json_import_delay_seconds
        record = JsonImportRecord(
            id=str(uuid.uuid4()),
            data_source_uuid=data_source_uuid,
            external_id=str(external_id) if external_id is not None else None,
            created_at=utc_now(),
            processing_at=now + delay / 2,
            due_at=now + delay,
            payload=body,
        )
        self._keep(record)
        return record.to_api(now)

    def get(self, data_source_uuid: str, import_id: str) -> dict[str, Any]:
        """``GET .../json_imports/{id or external_id}``: queued → processing → completed over the delay."""
        self._data_sources.get(data_source_uuid)
        found = self._records.get(import_id)
        if found is None or found.data_source_uuid != data_source_uuid:
            found_id = self._by_external_id.get((data_source_uuid, import_id))
            found = self._records.get(found_id) if found_id else None
        if found is None:
            raise bare_error(404, "Import not found")
        return found.to_api(self._clock())

    def apply(self, import_id: str, target: bulk.ImportTarget) -> None:
        """Apply the import that has fallen due to ``target``; its payload is dropped once applied."""
        record = self._records[import_id]
        record.status_details = bulk.apply_json_import(target, record.data_source_uuid, record.payload or {})
        record.payload = None
        record.completed_at = utc_now()

    def to_api(self, now: float) -> list[dict[str, Any]]:
        """Every import in API form, its status as of the epoch moment ``now``."""
        return [record.to_api(now) for record in self._records.values()]

    def _keep(self, record: JsonImportRecord) -> None:
        self._records[record.id] = record
        if record.external_id is not None:
            self._by_external_id[(record.data_source_uuid, record.external_id)] = record.id
        if record.completed_at is None:
            self._due_work.add(record.due_at, "json_import", record.id)
