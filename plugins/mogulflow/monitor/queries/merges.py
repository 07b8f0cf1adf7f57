"""Leads ChartMogul merged on its own, and how the merge DAG counted each lead's conversion.

ChartMogul merges customers with matching external ids or domains automatically (or a person does):
the latest reconciliation reports such leads, the merge DAG's conversions say done or failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from mogulflow.monitor.queries.cells import cell_datetime, cell_text
from mogulflow.monitor.queries.reconciliation import Reconciliation
from mogulflow.values.constants import RECONCILIATION_TABLE, STATE_TABLE
from mogulflow.warehouse.connection import Warehouse

#: At most this many leads are listed (newest first); the tables hold them all.
MERGES_SHOWN = 50


@dataclass(frozen=True)
class ChartMogulMerge:
    """One lead mogulflow did not merge itself that ChartMogul holds merged with other records."""

    lead_id: str
    merged_into: str  # the customer it is part of: `cus_… (records: …)`
    verdict: str  # done (into its paying customer), failed (into another customer), reported (no conversion)
    detail: str | None  # the merge DAG's reason, for a failed one
    seen_at: datetime | None


def chartmogul_merges(
    warehouse: Warehouse, reconciliation: Reconciliation, *, data_source_uuid: str | None = None
) -> tuple[ChartMogulMerge, ...]:
    """The merge DAG's verdicts on leads it found merged already, then the latest reconciliation's
    `merged` rows for the other leads (no conversion of theirs has been looked at yet)."""
    where, params = "entity = 'conversion' AND payload LIKE :marker", {"marker": '%"merged_into"%'}
    if data_source_uuid:
        where, params = where + " AND data_source_uuid = :ds", {**params, "ds": data_source_uuid}
    merges: dict[str, ChartMogulMerge] = {}
    if warehouse.table_exists(STATE_TABLE):
        frame = warehouse.query_frame(
            f"SELECT external_id, status, payload, synced_at FROM {STATE_TABLE} WHERE {where} "
            f"ORDER BY synced_at DESC LIMIT {MERGES_SHOWN}",
            params,
        )
        for row in frame.itertuples(index=False):
            payload = json.loads(row.payload)
            done = str(row.status) == "merged"
            merges[str(row.external_id)] = ChartMogulMerge(
                lead_id=str(row.external_id),
                merged_into=str(payload.get("merged_into")),
                verdict="done" if done else "failed",
                detail=None if done else cell_text(payload.get("error")),
                seen_at=cell_datetime(row.synced_at),
            )
    if reconciliation.available and reconciliation.run_id and warehouse.table_exists(RECONCILIATION_TABLE):
        where, params = "run_id = :run_id AND kind = 'merged'", {"run_id": reconciliation.run_id}
        if data_source_uuid:
            where, params = where + " AND data_source_uuid = :ds", {**params, "ds": data_source_uuid}
        frame = warehouse.query_frame(
            f"SELECT external_id, chartmogul_value, checked_at FROM {RECONCILIATION_TABLE} WHERE {where} "
            f"ORDER BY external_id LIMIT {MERGES_SHOWN}",
            params,
        )
        for row in frame.itertuples(index=False):
            merges.setdefault(
                str(row.external_id),
                ChartMogulMerge(
                    lead_id=str(row.external_id),
                    merged_into=str(row.chartmogul_value),
                    verdict="reported",
                    detail=None,
                    seen_at=cell_datetime(row.checked_at),
                ),
            )
    return tuple(merges.values())[:MERGES_SHOWN]
