"""Bulk JSON import flows: submit one import per batch, follow it until it completes or fails.

A retried task must not submit a second import of the same rows: an import carries the caller's
external id, and "already taken" for that id means "follow the one already submitted".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from mogulflow.chartmogul.errors import (
    BulkImportFailedError,
    BulkImportUnsupportedError,
    ChartMogulError,
    NotFoundError,
    ValidationError,
)
from mogulflow.chartmogul.flows import Call, Flow, Pause, create_once, segment
from mogulflow.chartmogul.retry import RetryPolicy

log = logging.getLogger(__name__)

#: The import state after which polling stops with success.
JSON_IMPORT_DONE = "completed"
#: Import states after which polling stops with `BulkImportFailedError` (spellings vary by server).
JSON_IMPORT_FAILED_STATES = frozenset({"failed", "error", "cancelled", "canceled", "rejected"})
#: Seconds between status polls: an import takes seconds to minutes, and each poll costs a request.
DEFAULT_POLL_INTERVAL = 2.0
#: Seconds an import may take before we give up following it (a large batch takes minutes).
DEFAULT_IMPORT_TIMEOUT = 900.0
#: The status a server without the bulk endpoint answers besides 404 (method not allowed).
METHOD_NOT_ALLOWED = 405


def create_json_import(
    policy: RetryPolicy, data_source_uuid: str, payload: Mapping[str, Any]
) -> Flow[dict[str, Any]]:
    """POST a JSON import once in effect (`BulkImportUnsupportedError` when the server has none)."""
    path = _json_import_path(data_source_uuid)
    import_id = payload.get("external_id")

    def find() -> Flow[dict[str, Any] | None]:
        if not import_id:
            return None
        try:
            return (yield from get_json_import(data_source_uuid, str(import_id)))
        except NotFoundError:
            return None

    try:
        answer = yield from create_once(policy, "json import", path, payload, find, adopt_existing=False)
    except NotFoundError as error:
        if "data source" in error.message.lower():
            raise
        raise _bulk_unsupported(error) from error
    except ChartMogulError as error:
        if error.status == METHOD_NOT_ALLOWED:
            raise _bulk_unsupported(error) from error
        raise
    return answer.body


def get_json_import(data_source_uuid: str, import_id: str) -> Flow[dict[str, Any]]:
    """GET a JSON import's status."""
    body = yield Call("GET", f"{_json_import_path(data_source_uuid)}/{segment(import_id)}")
    return dict(body)


def run_json_import(
    policy: RetryPolicy,
    data_source_uuid: str,
    payload: Mapping[str, Any],
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_IMPORT_TIMEOUT,
) -> Flow[dict[str, Any]]:
    """Submit a JSON import (or follow the one already submitted) and poll it to completion."""
    started = time.monotonic()
    import_external_id = payload.get("external_id")
    try:
        status = yield from create_json_import(policy, data_source_uuid, payload)
    except ValidationError as error:
        # A retried task already submitted this import: follow that one rather than fail.
        if not (error.already_exists and import_external_id):
            raise
        log.info("json import %s was already submitted; polling it", import_external_id)
        status = yield from get_json_import(data_source_uuid, str(import_external_id))
    # The docs poll by the external id the caller chose; fall back to the server's id.
    poll_id = str(import_external_id or status.get("id") or status.get("external_id"))
    while True:
        state = str(status.get("status", "")).lower()
        if state == JSON_IMPORT_DONE:
            return status
        if state in JSON_IMPORT_FAILED_STATES:
            raise BulkImportFailedError(
                f"json import {poll_id} ended {state}",
                status=None,
                method="GET",
                path=_json_import_path(data_source_uuid, quoted=False),
            )
        if time.monotonic() - started > timeout:
            raise BulkImportFailedError(
                f"json import {poll_id} still {state or 'unknown'} after {timeout:.0f} s",
                method="GET",
                path=_json_import_path(data_source_uuid, quoted=False),
            )
        yield Pause(poll_interval)
        status = yield from get_json_import(data_source_uuid, poll_id)


def _json_import_path(data_source_uuid: str, *, quoted: bool = True) -> str:
    """The data source's import collection (quoted for a request, as given for an error text)."""
    ds = segment(data_source_uuid) if quoted else data_source_uuid
    return f"/v1/data_sources/{ds}/json_imports"


def _bulk_unsupported(error: ChartMogulError) -> BulkImportUnsupportedError:
    """The error for a server that has no bulk import endpoint, keeping the API's own message."""
    return BulkImportUnsupportedError(
        f"this server has no bulk JSON import endpoint ({error.message})",
        status=error.status,
        method=error.method,
        path=error.path,
    )
