"""The data sources of the sandbox account, by uuid."""

from __future__ import annotations

from typing import Any

from mogulflow_sandbox.api_errors import (
    DATA_SOURCE_NOT_FOUND_MESSAGE,
    bare_error,
    field_errors,
    missing_parameter,
)
from mogulflow_sandbox.ids import new_uuid
from mogulflow_sandbox.record_store import RecordStore
from mogulflow_sandbox.records import DataSourceRecord
from mogulflow_sandbox.rules import is_blank
from mogulflow_sandbox.timestamps import utc_now


class DataSourceStore(RecordStore[DataSourceRecord]):
    """The data sources; every customer, plan and invoice points at one of them."""

    record_type = DataSourceRecord

    def create(self, name: object, system: str) -> DataSourceRecord:
        """A new data source: 400 without a name, 422 "Has already been taken." for a taken one."""
        if is_blank(name):
            raise missing_parameter("name")
        if not isinstance(name, str):
            raise field_errors({"name": "must be a string"})
        if any(source.name == name for source in self._records.values()):
            raise field_errors({"name": "Has already been taken."})
        record = DataSourceRecord(uuid=new_uuid("ds"), name=name, system=system, created_at=utc_now())
        self._keep(record)
        return record

    def get(self, data_source_uuid: str) -> DataSourceRecord:
        """The data source; unknown → 404 ``{"error": "Data source not found"}``."""
        return self._get(data_source_uuid, lambda: bare_error(404, DATA_SOURCE_NOT_FOUND_MESSAGE))

    def exists(self, data_source_uuid: object) -> bool:
        """True when a body's ``data_source_uuid`` names a data source (it may be any JSON value)."""
        return isinstance(data_source_uuid, str) and data_source_uuid in self._records

    def billing_system(self, data_source_uuid: str) -> str:
        """The ``system`` a customer of this source shows as ``billing-system-type`` ("Custom" if gone)."""
        source = self._records.get(data_source_uuid)
        return source.system if source is not None else "Custom"

    def has_system(self, data_source_uuid: str, system: str) -> bool:
        """True when the (existing) data source belongs to ``system``; the ``system`` list filter."""
        return self._records[data_source_uuid].system == system

    def matching(self, name: str | None = None, system: str | None = None) -> list[DataSourceRecord]:
        """Every data source, filtered by exact ``name``/``system`` when given."""
        return [
            source
            for source in self._records.values()
            if (name is None or source.name == name) and (system is None or source.system == system)
        ]

    def remove(self, data_source_uuid: str) -> None:
        """Forget the data source (its plans, invoices and customers are the caller's to remove first)."""
        del self._records[data_source_uuid]

    def to_api(self) -> list[dict[str, Any]]:
        """Every data source in API form."""
        return [source.to_api() for source in self._records.values()]

    def _keep(self, record: DataSourceRecord) -> None:
        self._records[record.uuid] = record
