"""What every collection store shares: its records by id, lookups, and the state-file form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from mogulflow_sandbox.api_errors import ApiError
from mogulflow_sandbox.records import StoredRecord, from_storage, to_storage

RecordT = TypeVar("RecordT", bound=StoredRecord)


class RecordStore(Generic[RecordT]):
    """The records of one collection by id; subclasses add their indexes in `_keep`."""

    record_type: type[RecordT]

    def __init__(self) -> None:
        self._records: dict[str, RecordT] = {}

    def find(self, record_id: str) -> RecordT | None:
        """The record, or None."""
        return self._records.get(record_id)

    def _get(self, record_id: str, not_found: Callable[[], ApiError]) -> RecordT:
        """The record; unknown → the collection's own 404 (each has its own body)."""
        record = self._records.get(record_id)
        if record is None:
            raise not_found()
        return record

    def to_storage(self) -> list[dict[str, Any]]:
        """Every record in state-file form, in the order they were stored."""
        return [to_storage(record) for record in self._records.values()]

    def load(self, stored: list[dict[str, Any]]) -> None:
        """Add the records `to_storage` wrote; `_keep` rebuilds indexes (and pending work) as for new ones."""
        for item in stored:
            self._keep(from_storage(self.record_type, item))

    def _keep(self, record: RecordT) -> None:
        """Hold the record and add it to the collection's indexes."""
        raise NotImplementedError
