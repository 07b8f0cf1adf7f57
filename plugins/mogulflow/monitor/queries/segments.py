"""The lead funnel split by one attribute: leads, trial leads and conversions per value of a key.

Per day or week, one series per value of the `lead_attributes` key chosen on the page (e.g. leads
per week by `lead_source`).

A lead's value is that of its newest `lead_attributes` row for the key (no row, or a null value:
`(none)`). The `SPLIT_VALUES_SHOWN` most frequent values get a series each, the rest one `other`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from mogulflow.monitor.queries.periods import GRAINS, Grain, Period
from mogulflow.warehouse.connection import Warehouse

SPLIT_VALUES_SHOWN = 8
NO_VALUE = "(none)"
OTHER = "other"
MEASURES = ("leads", "trial_leads", "conversions")


@dataclass(frozen=True)
class SplitFunnel:
    """Per measure, per value of the key: the counts of each day or week (aligned with `labels`)."""

    key: str
    grain: Grain
    labels: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # most leads first; `other` and `(none)` last
    series: Mapping[str, Mapping[str, tuple[int, ...]]] = field(default_factory=dict)  # measure → value →


def attribute_keys(warehouse: Warehouse) -> tuple[str, ...]:
    """The keys the `lead_attributes` table holds (none without the table), for the page's selector."""
    if not warehouse.table_exists("lead_attributes"):
        return ()
    frame = warehouse.query_frame("SELECT DISTINCT key FROM lead_attributes WHERE key IS NOT NULL ORDER BY 1")
    return tuple(str(key) for key in frame.iloc[:, 0])


_SPLIT_SQL = """
WITH lead_rows AS (
    SELECT lead_id, lead_created_at, free_trial_started_at,
           row_number() OVER (PARTITION BY lead_id ORDER BY updated_at DESC) AS newest
    FROM leads WHERE lead_id IS NOT NULL
), trial_rows AS (
    SELECT trial_id, lead_id, started_at,
           row_number() OVER (PARTITION BY trial_id ORDER BY updated_at DESC) AS newest
    FROM trials WHERE trial_id IS NOT NULL
), first_trial AS (
    SELECT lead_id, min(started_at) AS started_at FROM trial_rows WHERE newest = 1 GROUP BY lead_id
), first_conversion AS (
    SELECT lead_id, min(converted_at) AS converted_at FROM conversions
    WHERE lead_id IS NOT NULL GROUP BY lead_id
), attribute_rows AS (
    SELECT lead_id, value,
           row_number() OVER (PARTITION BY lead_id ORDER BY updated_at DESC) AS newest
    FROM lead_attributes WHERE key = :key AND lead_id IS NOT NULL
), lead AS (
    SELECT coalesce(l.lead_created_at, l.free_trial_started_at, f.started_at) AS lead_date,
           f.started_at AS first_trial_at, c.converted_at,
           coalesce(nullif(trim(a.value), ''), '(none)') AS segment
    FROM lead_rows l
    LEFT JOIN first_trial f ON f.lead_id = l.lead_id
    LEFT JOIN first_conversion c ON c.lead_id = l.lead_id
    LEFT JOIN attribute_rows a ON a.lead_id = l.lead_id AND a.newest = 1
    WHERE l.newest = 1
)
SELECT 'leads' AS measure, segment, date_trunc('{grain}', lead_date) AS bucket, count(*) AS n
FROM lead WHERE lead_date >= :since AND lead_date < :until GROUP BY 2, 3
UNION ALL
SELECT 'trial_leads', segment, date_trunc('{grain}', first_trial_at), count(*)
FROM lead WHERE first_trial_at >= :since AND first_trial_at < :until GROUP BY 2, 3
UNION ALL
SELECT 'conversions', segment, date_trunc('{grain}', converted_at), count(*)
FROM lead WHERE converted_at >= :since AND converted_at < :until GROUP BY 2, 3
"""

_TABLES = ("leads", "trials", "conversions", "lead_attributes")


def funnel_by_attribute(
    warehouse: Warehouse, period: Period, *, key: str, grain: Grain = "day"
) -> SplitFunnel:
    """Leads, trial leads and conversions per day or week, split by the value of `key`."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")
    if not all(warehouse.table_exists(table) for table in _TABLES):
        return SplitFunnel(key, grain)
    frame = warehouse.query_frame(
        _SPLIT_SQL.format(grain=grain), {"since": period.start, "until": period.end, "key": key}
    )
    frame = frame.dropna(subset=["bucket"])
    frame["bucket"] = [pd.Timestamp(moment).date() for moment in frame["bucket"]]
    frame["segment"] = frame["segment"].astype(str)
    by_leads = frame[frame["measure"] == "leads"].groupby("segment")["n"].sum().sort_values(ascending=False)
    named = [value for value in by_leads.index if value != NO_VALUE][:SPLIT_VALUES_SHOWN]
    frame["segment"] = [value if value in named or value == NO_VALUE else OTHER for value in frame["segment"]]
    values = [*named, *(v for v in (OTHER, NO_VALUE) if v in set(frame["segment"]))]
    buckets = _buckets(period, grain)
    series: dict[str, dict[str, tuple[int, ...]]] = {}
    for measure in MEASURES:
        rows = frame[frame["measure"] == measure].groupby(["segment", "bucket"])["n"].sum()
        series[measure] = {
            value: tuple(int(rows.get((value, bucket), 0)) for bucket in buckets) for value in values
        }
    return SplitFunnel(key, grain, tuple(b.isoformat() for b in buckets), tuple(values), series)


def _buckets(period: Period, grain: Grain) -> list[date]:
    """Every day or week of the period (as the funnel's charts label them)."""
    step = timedelta(days=1 if grain == "day" else 7)
    day = period.since - timedelta(days=period.since.weekday() if grain == "week" else 0)
    days = []
    while day < period.until:
        days.append(day)
        day += step
    return days
