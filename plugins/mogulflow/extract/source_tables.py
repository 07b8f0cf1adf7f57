"""Source tables: the contract's shape of `leads`, `plans`, `trials` and `conversions`.

Source tables: the contract's shape of `leads`, `plans`, `trials` and `conversions`, as validation
reads them (which columns, which are timestamps, integers, required, upper-cased).
"""

from __future__ import annotations

from dataclasses import dataclass

from mogulflow.values.entities import Entity

INTERVAL_UNITS = ("day", "month", "year")


@dataclass(frozen=True)
class SourceTable:
    """The contract's shape of one source table: its columns by kind, in table order."""

    entity: Entity
    columns: tuple[str, ...]
    timestamps: tuple[str, ...]
    integers: tuple[str, ...]
    required: tuple[str, ...]
    upper_cased: tuple[str, ...] = ()
    recency: str = "updated_at"  # which timestamp decides between rows sharing an id


LEADS = SourceTable(
    entity=Entity.LEAD,
    columns=(
        "lead_id",
        "company_name",
        "email",
        "country",
        "state",
        "city",
        "zip",
        "lead_created_at",
        "free_trial_started_at",
        "updated_at",
    ),
    timestamps=("lead_created_at", "free_trial_started_at", "updated_at"),
    integers=(),
    required=("lead_id", "company_name", "updated_at"),
    upper_cased=("country",),
)
PLANS = SourceTable(
    entity=Entity.PLAN,
    columns=("plan_id", "name", "interval_count", "interval_unit", "updated_at"),
    timestamps=("updated_at",),
    integers=("interval_count",),
    required=("plan_id", "name", "interval_count", "interval_unit", "updated_at"),
)
_TRIAL_COLUMNS = (
    "trial_id",
    "lead_id",
    "plan_id",
    "subscription_id",
    "started_at",
    "ends_at",
    "amount_in_cents",
    "currency",
    "quantity",
    "updated_at",
)
TRIALS = SourceTable(
    entity=Entity.TRIAL,
    columns=_TRIAL_COLUMNS,
    timestamps=("started_at", "ends_at", "updated_at"),
    integers=("amount_in_cents", "quantity"),
    required=tuple(column for column in _TRIAL_COLUMNS if column != "subscription_id"),
    upper_cased=("currency",),
)
CONVERSIONS = SourceTable(
    entity=Entity.CONVERSION,
    columns=("lead_id", "billing_data_source_uuid", "billing_customer_external_id", "converted_at"),
    timestamps=("converted_at",),
    integers=(),
    required=("lead_id", "billing_data_source_uuid", "billing_customer_external_id", "converted_at"),
    recency="converted_at",
)

SOURCE_TABLES = {table.entity: table for table in (LEADS, PLANS, TRIALS, CONVERSIONS)}
