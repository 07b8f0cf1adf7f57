"""Row builders for tests: valid source rows by default, override what the test is about.

`lead(lead_id="L1", email="bob@")` gives one `leads` row as a dict; `frame(lead(...), lead(...))`
turns rows into the DataFrame an extract would give.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

# the moment "the run started" in tests; source timestamps lie in 2025
NOW = datetime(2025, 11, 1, 12, 0, tzinfo=UTC)


def lead(lead_id: str | None = "L1", **overrides: object) -> dict[str, object]:
    """A valid `leads` row."""
    row = {
        "lead_id": lead_id,
        "company_name": "Acme Corp",
        "email": "jane@acme.example.com",
        "country": "US",
        "state": "CA",
        "city": "San Francisco",
        "zip": "94107",
        "lead_created_at": datetime(2025, 3, 1, 9, 0),
        "free_trial_started_at": datetime(2025, 3, 2, 10, 0),
        "updated_at": datetime(2025, 3, 2, 10, 0),
    }
    return _with(row, overrides)


def plan(plan_id: str | None = "P1", **overrides: object) -> dict[str, object]:
    """A valid `plans` row."""
    row = {
        "plan_id": plan_id,
        "name": "Pro monthly",
        "interval_count": 1,
        "interval_unit": "month",
        "updated_at": datetime(2025, 1, 1),
    }
    return _with(row, overrides)


def trial(trial_id: str | None = "T1", **overrides: object) -> dict[str, object]:
    """A valid `trials` row for lead L1 on plan P1."""
    row = {
        "trial_id": trial_id,
        "lead_id": "L1",
        "plan_id": "P1",
        "subscription_id": "S1",
        "started_at": datetime(2025, 3, 2, 10, 0),
        "ends_at": datetime(2025, 3, 16, 10, 0),
        "amount_in_cents": 0,
        "currency": "USD",
        "quantity": 1,
        "updated_at": datetime(2025, 3, 2, 10, 0),
    }
    return _with(row, overrides)


def conversion(lead_id: str | None = "L1", **overrides: object) -> dict[str, object]:
    """A valid `conversions` row for lead L1."""
    row = {
        "lead_id": lead_id,
        "billing_data_source_uuid": "ds_billing_stripe",
        "billing_customer_external_id": "cus_stripe_1",
        "converted_at": datetime(2025, 4, 1),
    }
    return _with(row, overrides)


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    """The rows as an extracted DataFrame (naive timestamps, as DuckDB gives them)."""
    return pd.DataFrame(list(rows))


def _with(row: dict[str, object], overrides: dict[str, object]) -> dict[str, object]:
    unknown = set(overrides) - set(row)
    if unknown:
        raise TypeError(f"no such column(s): {', '.join(sorted(unknown))}")
    return {**row, **overrides}
