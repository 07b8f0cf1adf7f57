"""Erasure: leave none of an erased lead's personal data in mogulflow's own tables.

What goes: every row about the lead or its trials (sync state with its payloads, created list,
rejects with their found values, reconciliation values, planned deletes); its id and its values (the
e-mail and company name it was synced or rejected with) inside any other text mogulflow keeps (a
run's message and details); its ids in the deletions audit become their hash. What stays: the fact,
in `mogulflow_erasures` (hashed id, when, which run, the outcome) and the hashed audit rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from mogulflow.values.deletions import erased_id
from mogulflow.values.entities import Entity
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.deletions import drop_plan_rows_of, hash_ids_in_deletions
from mogulflow.warehouse.scrub import drop_rows_about, replace_in_texts
from mogulflow.warehouse.sync_state import entries_in_every_source

# The fields of a customer that name a person or a company (the rest: dates, country codes).
PERSONAL_FIELDS = ("name", "email", "company", "city", "zip")


def personal_values(warehouse: Warehouse, lead_id: str, held: Mapping[str, Any] | None) -> set[str]:
    """The values that identify the lead, as mogulflow sent them and as ChartMogul holds them."""
    values: set[str] = set()
    for entry in entries_in_every_source(warehouse, Entity.LEAD, lead_id):
        values.update(_personal(entry.payload or {}))
    if held is not None:
        values.update(_personal(held))
    return values


def erase_from_tables(
    warehouse: Warehouse, lead_id: str, trial_ids: Collection[str], values: Collection[str]
) -> None:
    """Remove the lead's rows and values from every mogulflow table; its audit ids become hashes."""
    ids = {lead_id, *trial_ids}
    drop_rows_about(warehouse, ids)
    drop_plan_rows_of(warehouse, ids)
    hash_ids_in_deletions(warehouse, {external_id: erased_id(external_id) for external_id in ids})
    replace_in_texts(warehouse, values, ids=ids)


def _personal(fields: Mapping[str, Any]) -> set[str]:
    return {str(fields[name]).strip() for name in PERSONAL_FIELDS if fields.get(name) not in (None, "")}
