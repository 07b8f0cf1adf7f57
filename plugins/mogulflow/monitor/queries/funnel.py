"""The lead funnel per day or week: leads, trials and conversions from the source tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from mogulflow.monitor.queries.periods import GRAINS, Grain, Period
from mogulflow.warehouse.connection import Warehouse


@dataclass(frozen=True)
class FunnelBucket:
    """One day or week of the lead funnel."""

    start: date
    leads: int = 0  # leads whose ChartMogul lead date falls in the bucket
    free_trials: int = 0  # trials started in the bucket with amount 0
    paid_trials: int = 0  # trials started in the bucket with an amount above 0
    trial_leads: int = 0  # leads whose first trial started in the bucket
    converted_trial_leads: int = 0  # ... of which have a conversion (at any time)
    conversions: int = 0  # leads whose first conversion falls in the bucket
    cycle_days_total: float = 0.0  # sum over those conversions of days lead date → conversion

    @property
    def trials(self) -> int:
        return self.free_trials + self.paid_trials

    @property
    def conversion_rate(self) -> float | None:
        return self.converted_trial_leads / self.trial_leads if self.trial_leads else None

    @property
    def average_cycle_days(self) -> float | None:
        return self.cycle_days_total / self.conversions if self.conversions else None


@dataclass(frozen=True)
class Funnel:
    """The lead funnel of the source tables over a period, per day or week, with its totals."""

    grain: Grain
    buckets: tuple[FunnelBucket, ...]
    totals: FunnelBucket  # the whole period (its `start` is the period's first day)


# The lead funnel: one row per lead / trial (the newest of rows sharing an id), the lead date as
# ChartMogul gets it (CONTRACT.md "Mapping": lead_created_at, else free_trial_started_at, else the
# earliest trial start), each measure bucketed by its own date.
_FUNNEL_SQL = """
WITH lead_rows AS (
    SELECT lead_id, lead_created_at, free_trial_started_at,
           row_number() OVER (PARTITION BY lead_id ORDER BY updated_at DESC) AS newest
    FROM leads WHERE lead_id IS NOT NULL
), trial_rows AS (
    SELECT trial_id, lead_id, started_at, amount_in_cents,
           row_number() OVER (PARTITION BY trial_id ORDER BY updated_at DESC) AS newest
    FROM trials WHERE trial_id IS NOT NULL
), trial AS (
    SELECT trial_id, lead_id, started_at, amount_in_cents FROM trial_rows WHERE newest = 1
), first_trial AS (
    SELECT lead_id, min(started_at) AS started_at FROM trial GROUP BY lead_id
), first_conversion AS (
    SELECT lead_id, min(converted_at) AS converted_at FROM conversions
    WHERE lead_id IS NOT NULL GROUP BY lead_id
), lead AS (
    SELECT l.lead_id,
           coalesce(l.lead_created_at, l.free_trial_started_at, f.started_at) AS lead_date,
           f.started_at AS first_trial_at,
           c.converted_at
    FROM lead_rows l
    LEFT JOIN first_trial f ON f.lead_id = l.lead_id
    LEFT JOIN first_conversion c ON c.lead_id = l.lead_id
    WHERE l.newest = 1
)
SELECT 'leads' AS measure, date_trunc('{grain}', lead_date) AS bucket, count(*) AS n,
       0 AS converted, CAST(0 AS DOUBLE PRECISION) AS days
FROM lead WHERE lead_date >= :since AND lead_date < :until GROUP BY 2
UNION ALL
SELECT CASE WHEN amount_in_cents > 0 THEN 'paid_trials' ELSE 'free_trials' END,
       date_trunc('{grain}', started_at), count(*), 0, CAST(0 AS DOUBLE PRECISION)
FROM trial WHERE started_at >= :since AND started_at < :until GROUP BY 1, 2
UNION ALL
SELECT 'trial_leads', date_trunc('{grain}', first_trial_at), count(*), count(converted_at),
       CAST(0 AS DOUBLE PRECISION)
FROM lead WHERE first_trial_at >= :since AND first_trial_at < :until GROUP BY 2
UNION ALL
SELECT 'conversions', date_trunc('{grain}', converted_at), count(*), 0,
       CAST(sum(EXTRACT(EPOCH FROM (converted_at - lead_date))) / 86400.0 AS DOUBLE PRECISION)
FROM lead WHERE converted_at >= :since AND converted_at < :until AND lead_date IS NOT NULL GROUP BY 2
"""


_SOURCE_TABLES = ("leads", "trials", "conversions")


def lead_funnel(warehouse: Warehouse, period: Period, *, grain: Grain = "day") -> Funnel:
    """Leads, free and paid trials, trial-to-paid conversion and sales-cycle length per day or week.

    From the source tables as they are now, valid rows or not: what the warehouse says happened.
    """
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")
    if not all(warehouse.table_exists(table) for table in _SOURCE_TABLES):
        return Funnel(grain, (), FunnelBucket(start=period.since))
    frame = warehouse.query_frame(
        _FUNNEL_SQL.format(grain=grain), {"since": period.start, "until": period.end}
    )
    values: dict[date, dict[str, float]] = {}
    for row in frame.itertuples(index=False):
        if row.bucket is None or pd.isna(row.bucket):
            continue
        bucket = values.setdefault(pd.Timestamp(row.bucket).date(), {})
        n, days = int(row.n), float(row.days)
        if row.measure == "trial_leads":
            bucket["trial_leads"] = n
            bucket["converted_trial_leads"] = int(row.converted)
        elif row.measure == "conversions":
            bucket["conversions"] = n
            bucket["cycle_days_total"] = days
        else:
            bucket[row.measure] = n
    buckets = tuple(
        FunnelBucket(
            start=start,
            leads=int(v.get("leads", 0)),
            free_trials=int(v.get("free_trials", 0)),
            paid_trials=int(v.get("paid_trials", 0)),
            trial_leads=int(v.get("trial_leads", 0)),
            converted_trial_leads=int(v.get("converted_trial_leads", 0)),
            conversions=int(v.get("conversions", 0)),
            cycle_days_total=float(v.get("cycle_days_total", 0.0)),
        )
        for start, v in sorted(_every_bucket(period, grain, values).items())
    )
    totals = FunnelBucket(
        start=period.since,
        leads=sum(b.leads for b in buckets),
        free_trials=sum(b.free_trials for b in buckets),
        paid_trials=sum(b.paid_trials for b in buckets),
        trial_leads=sum(b.trial_leads for b in buckets),
        converted_trial_leads=sum(b.converted_trial_leads for b in buckets),
        conversions=sum(b.conversions for b in buckets),
        cycle_days_total=math.fsum(b.cycle_days_total for b in buckets),
    )
    return Funnel(grain, buckets, totals)


def _every_bucket(
    period: Period, grain: Grain, values: dict[date, dict[str, float]]
) -> dict[date, dict[str, float]]:
    """The buckets with values plus the empty ones between, so a chart's axis has no holes."""
    step = timedelta(days=1 if grain == "day" else 7)
    first = period.since - timedelta(days=period.since.weekday() if grain == "week" else 0)
    filled = dict(values)
    day = first
    while day < period.until:
        filled.setdefault(day, {})
        day += step
    return filled
