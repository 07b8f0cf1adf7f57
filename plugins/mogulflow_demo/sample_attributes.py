"""Sample attributes and tags: the optional `lead_attributes` and `lead_tags` tables for the demo.

Five custom attributes per lead, as a marketing or sales team segments its funnel by
(`lead_source`, `utm_campaign`, `plan_tier`, `company_size` as an Integer, `sales_owner`), and two
tags (`newsletter`, `webinar`, `partner`, `enterprise`, `self_serve`, …). Each row is as recent as its
lead, so an incremental run reads a lead's attributes with it. Deterministic: the same seed and the
same leads give the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ATTRIBUTE_TABLES = ("lead_attributes", "lead_tags")

# The optional tables (CONTRACT.md, "Lead attributes and tags"), in neutral types.
ATTRIBUTE_TABLES_DDL = """
CREATE TABLE lead_attributes (
    lead_id    TEXT,
    key        TEXT,
    type       TEXT,
    value      TEXT NULL,
    updated_at TIMESTAMP
);
CREATE TABLE lead_tags (
    lead_id    TEXT,
    tag        TEXT,
    present    BOOLEAN,
    updated_at TIMESTAMP
);
"""

LEAD_SOURCES = ("ads", "seo", "referral", "event", "outbound", "partner")
LEAD_SOURCE_WEIGHTS = (0.3, 0.25, 0.15, 0.1, 0.12, 0.08)
CAMPAIGNS = ("spring_launch", "webinar_q2", "black_friday", "brand", "retargeting", "none")
PLAN_TIERS = ("starter", "pro", "business", "enterprise")
SALES_OWNERS = ("ana", "ben", "chloe", "dev", "emma")
TAGS = ("newsletter", "webinar", "partner", "enterprise", "self_serve", "product_hunt")


def build_attribute_frames(
    lead_ids: Sequence[str], updated_at: Sequence[pd.Timestamp], *, seed: int = 7
) -> dict[str, pd.DataFrame]:
    """`lead_attributes` (5 rows a lead) and `lead_tags` (2 rows a lead) for these leads."""
    rng = np.random.default_rng(seed + 20)
    ids = np.asarray(lead_ids, dtype=object)
    stamps = pd.to_datetime(pd.Series(updated_at)).to_numpy()
    n = len(ids)
    values = {
        ("lead_source", "String"): rng.choice(LEAD_SOURCES, size=n, p=LEAD_SOURCE_WEIGHTS),
        ("utm_campaign", "String"): rng.choice(CAMPAIGNS, size=n),
        ("plan_tier", "String"): rng.choice(PLAN_TIERS, size=n, p=(0.45, 0.3, 0.17, 0.08)),
        ("company_size", "Integer"): np.round(rng.lognormal(3.0, 1.2, size=n)).astype(int).astype(str),
        ("sales_owner", "String"): rng.choice(SALES_OWNERS, size=n),
    }
    attributes = pd.concat(
        [
            pd.DataFrame(
                {
                    "lead_id": ids,
                    "key": key,
                    "type": kind,
                    "value": column.astype(object),
                    "updated_at": stamps,
                }
            )
            for (key, kind), column in values.items()
        ],
        ignore_index=True,
    )
    first = rng.integers(len(TAGS), size=n)
    second = (first + 1 + rng.integers(len(TAGS) - 1, size=n)) % len(TAGS)  # never the same tag twice
    tags = pd.concat(
        [
            pd.DataFrame({"lead_id": ids, "tag": np.asarray(TAGS, dtype=object)[pick], "present": True})
            for pick in (first, second)
        ],
        ignore_index=True,
    ).assign(updated_at=np.concatenate([stamps, stamps]))
    return {"lead_attributes": attributes, "lead_tags": tags}


def write_attribute_tables(connection: object, frames: dict[str, pd.DataFrame]) -> None:
    """(Re)create the two tables in a DuckDB connection and fill them."""
    for table in ATTRIBUTE_TABLES:
        connection.execute(f"DROP TABLE IF EXISTS {table}")  # type: ignore[attr-defined]
    connection.execute(ATTRIBUTE_TABLES_DDL)  # type: ignore[attr-defined]
    for table in ATTRIBUTE_TABLES:
        frame = frames[table]
        frame = frame.assign(updated_at=frame["updated_at"].astype("datetime64[us]"))
        connection.register("sample_rows", frame)  # type: ignore[attr-defined]
        columns = ", ".join(frame.columns)
        connection.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM sample_rows")  # type: ignore[attr-defined]
        connection.unregister("sample_rows")  # type: ignore[attr-defined]
