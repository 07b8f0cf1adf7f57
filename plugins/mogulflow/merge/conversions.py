"""Conversions: which leads became paying customers, read from the warehouse and checked.

A conversion says: lead `lead_id` (a customer mogulflow created in its own data source) became
the paying customer `billing_customer_external_id` that a billing integration (Stripe,
Chargebee, ...) creates in `billing_data_source_uuid`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mogulflow.extract.source_rows import extract_entity
from mogulflow.extract.source_tables import CONVERSIONS
from mogulflow.extract.waiting import without_still_waiting
from mogulflow.merge.paying_customers import BillingKey
from mogulflow.validate.validator import conversion_rules, validate_into
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import ExtractReport, StagedExtract
from mogulflow.warehouse import staging
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.parquet_parts import read_frame
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus, ids_with_status, load_state, synced_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversion:
    """One valid `conversions` row: merge lead `lead_id` into the paying customer `billing`."""

    lead_id: str
    billing: BillingKey

    def state_payload(self) -> dict[str, str]:
        """What the sync state remembers of the conversion (to tell a changed one from a done one)."""
        return {
            "billing_data_source_uuid": self.billing.data_source_uuid,
            "billing_customer_external_id": self.billing.external_id,
        }

    def is_done(self, entry: StateEntry | None) -> bool:
        """Whether the sync state records this very conversion as merged."""
        payload = dict(entry.payload or {}) if entry is not None else {}
        return (
            entry is not None
            and entry.status is SyncStatus.MERGED
            and {key: payload.get(key) for key in self.state_payload()} == self.state_payload()
        )


def extract_and_validate_conversions(
    warehouse: Warehouse, settings: RunSettings, data_source_uuid: str | None
) -> ExtractReport:
    """Extract the window's conversions (plus the ones an earlier run could not finish), validate
    them, stage valid rows and rejects.

    A conversion is valid only if its lead was synced by mogulflow into `data_source_uuid`.
    """
    ensure_tables(warehouse)
    frame = extract_entity(warehouse, Entity.CONVERSION, settings.window, data_source_uuid=data_source_uuid)
    known = synced_ids(warehouse, Entity.LEAD, data_source_uuid) if data_source_uuid else set()
    if data_source_uuid:
        frame = without_still_waiting(
            frame,
            Entity.CONVERSION,
            window=settings.window,
            time_column="converted_at",
            waiting=ids_with_status(warehouse, Entity.CONVERSION, data_source_uuid, (SyncStatus.WAITING,)),
            known_parents={"lead_id": known},
        )
    run_staging = staging.for_run(warehouse, settings.dag_id, settings.run_id)
    parts = run_staging.valid_parts(Entity.CONVERSION)
    rules = conversion_rules(settings.started_at, known_lead_ids=known)
    found = validate_into(frame, CONVERSIONS, rules, parts)
    part = run_staging.stage_rejects(
        Entity.CONVERSION, found.rejected, found.extracted, found.valid, parts.finish()
    )
    log.info(
        "conversions: extracted %d, valid %d, rejected %d%s",
        part.extracted,
        part.valid,
        part.rejected,
        f": {dict(part.rejects_by_rule)}" if part.rejected else "",
    )
    return ExtractReport({Entity.CONVERSION: part})


def read_conversions(warehouse: Warehouse, part: StagedExtract) -> list[Conversion]:
    """The staged valid conversions of the run, one per lead."""
    frame = read_frame(warehouse, part.valid_path)
    return [
        Conversion(
            str(row.lead_id),
            BillingKey(str(row.billing_data_source_uuid), str(row.billing_customer_external_id)),
        )
        for row in frame.itertuples(index=False)
    ]


def keys_to_look_up(
    warehouse: Warehouse, data_source_uuid: str | None, extract: ExtractReport
) -> list[BillingKey]:
    """The paying customers the run needs: those of the valid conversions not merged yet."""
    conversions = read_conversions(warehouse, extract[Entity.CONVERSION])
    if not conversions or not data_source_uuid:
        return []
    state = load_state(warehouse, Entity.CONVERSION, data_source_uuid, [c.lead_id for c in conversions])
    return sorted({c.billing for c in conversions if not c.is_done(state.get(c.lead_id))})
