"""Source tables: the contract's shape of `leads`, `plans`, `trials`, `conversions`, and the optional two.

Source tables: the contract's shape of each source table (`leads`, `plans`, `trials`, `conversions`,
the optional `lead_attributes` and `lead_tags`), as validation
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
    # The columns that identify a row, when more than the entity's id column (an attribute is one
    # key of one lead): rows sharing them are duplicates. The id column stays the reject's source_id.
    identity: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()

    @property
    def identity_columns(self) -> tuple[str, ...]:
        """The columns whose values together identify a row."""
        return self.identity or (self.entity.id_column,)


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

LEAD_ATTRIBUTES = SourceTable(
    entity=Entity.ATTRIBUTE,
    columns=("lead_id", "key", "type", "value", "updated_at"),
    timestamps=("updated_at",),
    integers=(),
    # a null value removes the key, whatever the type says (the type is checked when there is a value)
    required=("lead_id", "key", "updated_at"),
    identity=("lead_id", "key"),
)
LEAD_TAGS = SourceTable(
    entity=Entity.TAG,
    columns=("lead_id", "tag", "present", "updated_at"),
    timestamps=("updated_at",),
    integers=(),
    required=("lead_id", "tag", "present", "updated_at"),
    identity=("lead_id", "tag"),
    booleans=("present",),
)

SOURCE_TABLES = {
    table.entity: table for table in (LEADS, PLANS, TRIALS, CONVERSIONS, LEAD_ATTRIBUTES, LEAD_TAGS)
}
