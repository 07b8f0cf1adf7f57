# ruff: noqa: E501  (the source rows below read best as one table row per line)
"""A small, hand-written warehouse whose expected sync outcome the tests spell out.

Leads L1-L4 are valid (L1 also has an older duplicate row; L2-L4 exercise the lead-date default
rule); L5 has a bad email. Plans P1, P2 are valid, P3 has a weekly interval. Trials T1-T3 are
valid, T4 belongs to the rejected lead L5, T5 to the rejected plan P3.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
from repo_paths import REPO

T = datetime.fromisoformat

LEADS = [
    # lead_id, company_name, email, country, state, city, zip, lead_created_at, free_trial_started_at, updated_at
    ("L1", "Acme GmbH", "ops@acme.example", "de", None, "Berlin", "10115", T("2025-01-02 09:00"), T("2025-01-05 10:00"), T("2025-01-10 00:00")),
    ("L1", "Acme (old name)", None, "DE", None, None, None, None, None, T("2025-01-01 00:00")),
    ("L2", "Beta Ltd", "hi@beta.example", "GB", None, "London", None, None, T("2025-02-01 08:30"), T("2025-02-02 00:00")),
    ("L3", "Gamma Inc", None, "US", "CA", "Oakland", "94601", None, None, T("2025-03-04 00:00")),
    ("L4", "Delta SA", None, None, None, None, None, None, None, T("2025-03-05 00:00")),
    ("L5", "Epsilon", "not-an-email", "FR", None, None, None, None, None, T("2025-03-06 00:00")),
]  # fmt: skip
PLANS = [
    ("P1", "Pro monthly", 1, "month", T("2025-01-01 00:00")),
    ("P2", "Pro yearly", 1, "year", T("2025-01-01 00:00")),
    ("P3", "Weekly", 1, "week", T("2025-01-01 00:00")),
]
TRIALS = [
    # trial_id, lead_id, plan_id, subscription_id, started_at, ends_at, amount_in_cents, currency, quantity, updated_at
    ("T1", "L1", "P1", None, T("2025-01-05 10:00"), T("2025-01-19 10:00"), 0, "usd", 1, T("2025-01-10 00:00")),
    ("T2", "L2", "P2", "sub_2", T("2025-02-01 08:30"), T("2025-02-15 08:30"), 1500, "EUR", 2, T("2025-02-02 00:00")),
    ("T3", "L3", "P1", None, T("2025-03-03 12:00"), T("2025-03-17 12:00"), 0, "USD", 1, T("2025-03-04 00:00")),
    ("T4", "L5", "P1", None, T("2025-03-06 00:00"), T("2025-03-20 00:00"), 0, "USD", 1, T("2025-03-06 00:00")),
    ("T5", "L1", "P3", None, T("2025-01-06 00:00"), T("2025-01-20 00:00"), 0, "USD", 1, T("2025-01-10 00:00")),
]  # fmt: skip


def build_warehouse(path) -> None:
    connection = duckdb.connect(str(path))
    connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
    connection.executemany("INSERT INTO leads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", LEADS)
    connection.executemany("INSERT INTO plans VALUES (?, ?, ?, ?, ?)", PLANS)
    connection.executemany("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", TRIALS)
    connection.close()


def build_postgres_warehouse(dsn: dict) -> None:
    """The same rows in a PostgreSQL database."""
    import psycopg

    with psycopg.connect(**dsn) as connection:
        connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO leads VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", LEADS)
            cursor.executemany("INSERT INTO plans VALUES (%s, %s, %s, %s, %s)", PLANS)
            cursor.executemany("INSERT INTO trials VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", TRIALS)
