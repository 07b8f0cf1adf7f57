"""First contact: learn what a data source holds when the sync state is empty.

First contact: when the sync state is empty but the data source may hold customers already (a
re-install, a lost state table), learn what ChartMogul holds by listing it, instead of creating
again or looking customers up one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.errors import ChartMogulError
from mogulflow.load.writes import LOAD_STOPPERS
from mogulflow.values.entities import Entity
from mogulflow.values.payload_hash import content_hash
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus

log = logging.getLogger(__name__)


def rebuild_customer_state(
    client: ChartMogulClient,
    *,
    data_source_uuid: str,
    run_id: str,
    fields_of: Callable[[Mapping[str, Any]], Mapping[str, Any]],
) -> dict[str, StateEntry]:
    """Rebuild the customers' sync state by listing the data source (200 per page).

    Used when the state is empty but the data source may already hold customers (a re-install, a
    lost state table): what is there already is compared, not created again or looked up one by
    one. `fields_of` reads an API customer into the fields a payload sends, so hashes agree.
    """
    try:
        customers = list(client.iter_customers(data_source_uuid=data_source_uuid))
    except LOAD_STOPPERS:
        raise
    except ChartMogulError as error:
        # Without the listing, creates still cannot double: an existing customer is adopted.
        log.warning("Could not list the data source's customers (%s); creating with look-ups instead.", error)
        return {}
    now = datetime.now(UTC)
    entries: dict[str, StateEntry] = {}
    for customer in customers:
        external_id = customer.get("external_id")
        sources = {customer.get("data_source_uuid"), *(customer.get("data_source_uuids") or ())} - {None}
        if not external_id or (sources and data_source_uuid not in sources):
            continue
        fields = dict(fields_of(customer))
        entries[external_id] = StateEntry(
            entity=Entity.LEAD,
            data_source_uuid=data_source_uuid,
            external_id=external_id,
            status=SyncStatus.SYNCED,
            synced_at=now,
            run_id=run_id,
            chartmogul_uuid=customer["uuid"],
            content_hash=content_hash(fields),
            payload=fields,
        )
    return entries
