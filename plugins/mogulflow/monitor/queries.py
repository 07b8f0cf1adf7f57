"""What the monitoring page shows, read from the warehouse: every count and average is computed in
SQL (DuckDB or PostgreSQL), so the page stays fast on a million leads; Python only shapes the
few aggregated rows into values.

Airflow-free: the app opens the warehouse and hands it in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from mogulflow.model import EntityCounts
from mogulflow.reconcile import RECONCILE_DAG_ID
from mogulflow.record import COUNT_FIELDS, REJECTS_TABLE, RUN_COLUMN_PREFIX, RUNS_TABLE
from mogulflow.state import STATE_TABLE
from mogulflow.warehouse import Warehouse

RECONCILIATION_TABLE = "mogulflow_reconciliation"
LEADS_TRIALS_DAG_ID = "chartmogul_leads_trials"
MERGE_DAG_ID = "chartmogul_merge_converted_leads"
MONITORED_DAG_IDS = (LEADS_TRIALS_DAG_ID, MERGE_DAG_ID)

Grain = Literal["day", "week"]
GRAINS: tuple[Grain, ...] = ("day", "week")

# Enough to read a night's story without paging; the CSV has every reject.
DEFAULT_RUN_LIMIT = 50
EXAMPLES_PER_GROUP = 3
MAX_REJECT_GROUPS = 100
RECONCILIATION_EXAMPLES = 5
LOOKUP_RUN_LIMIT = 50
REJECTS_CSV_COLUMNS = ("run_id", "dag_id", "entity", "source_id", "reason", "rejected_at")
# `field: rule (found 'value')` → `field: rule` (see `RuleFailure.describe`); one reason holds every
# broken rule, joined by "; ".
_FOUND_SUFFIX = r" \(found .*\)$"


# ---- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The half-open interval [since, until) of UTC days the page looks at."""

    since: date
    until: date  # exclusive

    @property
    def start(self) -> datetime:
        return datetime(self.since.year, self.since.month, self.since.day)

    @property
    def end(self) -> datetime:
        return datetime(self.until.year, self.until.month, self.until.day)

    @classmethod
    def last_days(cls, days: int, *, today: date) -> Period:
        """The `days` days up to and including `today`."""
        return cls(since=today - timedelta(days=days - 1), until=today + timedelta(days=1))


@dataclass(frozen=True)
class DataSource:
    """A ChartMogul data source mogulflow has written to, as the runs recorded it."""

    name: str
    uuid: str


@dataclass(frozen=True)
class RunRow:
    """One run of either DAG, as `mogulflow_runs` holds it."""

    run_id: str
    dag_id: str
    window_start: datetime | None
    window_end: datetime | None
    full_refresh: bool
    dry_run: bool
    data_source_name: str | None
    started_at: datetime
    finished_at: datetime
    outcome: str
    message: str | None
    counts: Mapping[str, EntityCounts]  # by entity, only those the DAG handles

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class RejectExample:
    """One rejected row: which id, every rule it broke, which run."""

    source_id: str | None
    reason: str
    run_id: str


@dataclass(frozen=True)
class RejectGroup:
    """The rejects of one entity that broke one rule."""

    entity: str
    rule: str
    rows: int  # reject records breaking this rule (a row rejected by two runs counts twice)
    ids: int  # distinct source ids among them
    examples: tuple[RejectExample, ...]


@dataclass(frozen=True)
class Rejects:
    """The period's rejects: totals per entity and groups per (entity, rule)."""

    rows_by_entity: Mapping[str, int]
    groups: tuple[RejectGroup, ...]

    @property
    def total(self) -> int:
        return sum(self.rows_by_entity.values())


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


@dataclass(frozen=True)
class ReconciliationGroup:
    """The differences of one kind (and field) for one entity found by the latest reconciliation."""

    entity: str
    kind: str  # missing (in ChartMogul), extra (in ChartMogul), different
    field: str | None
    rows: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Reconciliation:
    """The latest reconciliation run of the data source, or why there is none."""

    available: bool  # False: the table does not exist yet (no reconciliation ever ran)
    run_id: str | None = None
    checked_at: datetime | None = None
    groups: tuple[ReconciliationGroup, ...] = ()

    @property
    def total(self) -> int:
        return sum(group.rows for group in self.groups)


@dataclass(frozen=True)
class RunVerdict:
    """What one run did with the looked-up row."""

    run_id: str
    dag_id: str
    started_at: datetime
    outcome: str
    dry_run: bool
    verdict: str  # rejected / waiting / failed / synced / merged / extracted
    detail: str | None  # the broken rules, the API error, the sync state written


@dataclass(frozen=True)
class StateRow:
    """A `mogulflow_sync_state` entry of the looked-up id."""

    entity: str
    data_source_uuid: str
    status: str
    chartmogul_uuid: str | None
    synced_at: datetime
    run_id: str
    last_error: str | None


@dataclass(frozen=True)
class Lookup:
    """The story of one lead or trial id: why it is (not) in ChartMogul."""

    source_id: str
    source_rows: Mapping[str, Mapping[str, Any]]  # table → its latest row with that id
    runs: tuple[RunVerdict, ...]
    states: tuple[StateRow, ...]
    conversion: Mapping[str, Any] | None  # the lead's conversion row, when it converted
    trial_ids: tuple[str, ...] = ()  # a lead's trials

    @property
    def found(self) -> bool:
        return bool(self.source_rows or self.runs or self.states)


@dataclass(frozen=True)
class Overview:
    """Everything the page shows for one period and data source."""

    period: Period
    data_source: DataSource | None
    data_sources: tuple[DataSource, ...]
    runs: tuple[RunRow, ...]
    rejects: Rejects
    funnel: Funnel
    reconciliation: Reconciliation
    has_runs_table: bool = True


# ---- queries ------------------------------------------------------------------------------------


def list_data_sources(warehouse: Warehouse) -> tuple[DataSource, ...]:
    """The data sources the runs have written to, most recently used first."""
    if not warehouse.table_exists(RUNS_TABLE):
        return ()
    frame = warehouse.query_frame(
        f"SELECT data_source_name, data_source_uuid, max(started_at) AS last_run FROM {RUNS_TABLE} "
        "WHERE data_source_uuid IS NOT NULL GROUP BY data_source_name, data_source_uuid "
        "ORDER BY last_run DESC, data_source_name"
    )
    return tuple(
        DataSource(name=str(row.data_source_name or row.data_source_uuid), uuid=str(row.data_source_uuid))
        for row in frame.itertuples(index=False)
    )


def _run_filter(period: Period, data_source_uuid: str | None, *, alias: str = "") -> tuple[str, dict]:
    prefix = f"{alias}." if alias else ""
    sql = f"{prefix}started_at >= :since AND {prefix}started_at < :until"
    params: dict[str, Any] = {"since": period.start, "until": period.end}
    if data_source_uuid:
        sql += f" AND {prefix}data_source_uuid = :data_source_uuid"
        params["data_source_uuid"] = data_source_uuid
    return sql, params


_ENTITIES_OF_DAG = {
    LEADS_TRIALS_DAG_ID: ("lead", "plan", "trial"),
    MERGE_DAG_ID: ("conversion",),
}


def recent_runs(
    warehouse: Warehouse,
    period: Period,
    *,
    data_source_uuid: str | None = None,
    dag_id: str | None = None,
    limit: int = DEFAULT_RUN_LIMIT,
) -> tuple[RunRow, ...]:
    """The runs of both DAGs started in the period, newest first."""
    if not warehouse.table_exists(RUNS_TABLE):
        return ()
    where, params = _run_filter(period, data_source_uuid)
    if dag_id:
        where += " AND dag_id = :dag_id"
        params["dag_id"] = dag_id
    count_columns = [f"{prefix}_{name}" for prefix in RUN_COLUMN_PREFIX.values() for name in COUNT_FIELDS]
    frame = warehouse.query_frame(
        "SELECT run_id, dag_id, window_start, window_end, full_refresh, dry_run, data_source_name, "
        f"started_at, finished_at, outcome, message, {', '.join(count_columns)} FROM {RUNS_TABLE} "
        f"WHERE {where} ORDER BY started_at DESC, run_id DESC LIMIT {int(limit)}",
        params,
    )
    runs = []
    for row in frame.to_dict("records"):
        entities = _ENTITIES_OF_DAG.get(row["dag_id"], tuple(str(e) for e in RUN_COLUMN_PREFIX))
        counts = {
            str(entity): EntityCounts(**{name: int(row[f"{prefix}_{name}"]) for name in COUNT_FIELDS})
            for entity, prefix in RUN_COLUMN_PREFIX.items()
            if str(entity) in entities
        }
        runs.append(
            RunRow(
                run_id=str(row["run_id"]),
                dag_id=str(row["dag_id"]),
                window_start=_datetime(row["window_start"]),
                window_end=_datetime(row["window_end"]),
                full_refresh=bool(row["full_refresh"]),
                dry_run=bool(row["dry_run"]),
                data_source_name=_text(row["data_source_name"]),
                started_at=_datetime(row["started_at"]) or datetime.min,
                finished_at=_datetime(row["finished_at"]) or datetime.min,
                outcome=str(row["outcome"]),
                message=_text(row["message"]),
                counts=counts,
            )
        )
    return tuple(runs)


def _rejects_in_period(period: Period, data_source_uuid: str | None) -> tuple[str, dict]:
    """The rejects of the runs started in the period (and data source), as a sub-query."""
    where, params = _run_filter(period, data_source_uuid, alias="u")
    sql = (
        "SELECT r.run_id, r.dag_id, r.entity, r.source_id, r.reason, r.rejected_at "
        f"FROM {REJECTS_TABLE} r JOIN {RUNS_TABLE} u ON u.run_id = r.run_id AND u.dag_id = r.dag_id "
        f"WHERE {where}"
    )
    return sql, params


def rejects_by_rule(warehouse: Warehouse, period: Period, *, data_source_uuid: str | None = None) -> Rejects:
    """The period's rejects grouped by entity and broken rule, with a few example rows each.

    A row that broke two rules counts in both groups; `rows_by_entity` counts it once.
    """
    if not (warehouse.table_exists(REJECTS_TABLE) and warehouse.table_exists(RUNS_TABLE)):
        return Rejects({}, ())
    picked, params = _rejects_in_period(period, data_source_uuid)
    totals = warehouse.query_frame(
        f"SELECT entity, count(*) AS n FROM ({picked}) p GROUP BY entity ORDER BY entity", params
    )
    by_rule = (
        f"WITH picked AS ({picked}), "
        "broken AS (SELECT entity, source_id, reason, run_id, rejected_at, "
        f"regexp_replace(unnest(string_to_array(reason, '; ')), '{_FOUND_SUFFIX}', '') AS rule "
        "FROM picked), "
        "ranked AS (SELECT *, row_number() OVER (PARTITION BY entity, rule "
        "ORDER BY rejected_at DESC, source_id) AS nth FROM broken) "
    )
    groups = warehouse.query_frame(
        f"{by_rule}SELECT entity, rule, count(*) AS n, count(DISTINCT source_id) AS ids FROM ranked "
        f"GROUP BY entity, rule ORDER BY n DESC, entity, rule LIMIT {MAX_REJECT_GROUPS}",
        params,
    )
    examples = warehouse.query_frame(
        f"{by_rule}SELECT entity, rule, source_id, reason, run_id FROM ranked "
        f"WHERE nth <= {EXAMPLES_PER_GROUP} ORDER BY entity, rule, nth",
        params,
    )
    examples_of: dict[tuple[str, str], list[RejectExample]] = {}
    for row in examples.itertuples(index=False):
        examples_of.setdefault((row.entity, row.rule), []).append(
            RejectExample(source_id=_text(row.source_id), reason=str(row.reason), run_id=str(row.run_id))
        )
    return Rejects(
        rows_by_entity={str(row.entity): int(row.n) for row in totals.itertuples(index=False)},
        groups=tuple(
            RejectGroup(
                entity=str(row.entity),
                rule=str(row.rule),
                rows=int(row.n),
                ids=int(row.ids),
                examples=tuple(examples_of.get((row.entity, row.rule), ())),
            )
            for row in groups.itertuples(index=False)
        ),
    )


def iter_rejects_csv_frames(
    warehouse: Warehouse, period: Period, *, data_source_uuid: str | None = None
) -> Iterator[pd.DataFrame]:
    """Every reject of the period's runs (the CSV download), in chunks, oldest first."""
    if not (warehouse.table_exists(REJECTS_TABLE) and warehouse.table_exists(RUNS_TABLE)):
        yield pd.DataFrame(columns=list(REJECTS_CSV_COLUMNS))
        return
    picked, params = _rejects_in_period(period, data_source_uuid)
    yield from warehouse.iter_frames(
        f"SELECT {', '.join(REJECTS_CSV_COLUMNS)} FROM ({picked}) p "
        "ORDER BY rejected_at, run_id, entity, source_id",
        params,
    )


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


def latest_reconciliation(warehouse: Warehouse, *, data_source_uuid: str | None = None) -> Reconciliation:
    """The differences the latest reconciliation run found, by entity, kind and field."""
    if not warehouse.table_exists(RECONCILIATION_TABLE):
        return Reconciliation(available=False)
    where, params = ("data_source_uuid = :data_source_uuid", {"data_source_uuid": data_source_uuid})
    if not data_source_uuid:
        where, params = "1 = 1", {}
    # A reconciliation that found no drift writes no difference rows, only its run row: the latest
    # run is the newer of the two, so "ChartMogul agrees" shows as such, not as "never ran".
    latest = warehouse.query_frame(
        f"SELECT run_id, max(checked_at) AS checked_at FROM ("
        f"SELECT run_id, checked_at FROM {RECONCILIATION_TABLE} WHERE {where} UNION ALL "
        f"SELECT run_id, finished_at AS checked_at FROM {RUNS_TABLE} "
        f"WHERE dag_id = :reconcile_dag_id AND {where}) AS checks "
        "GROUP BY run_id ORDER BY checked_at DESC LIMIT 1",
        {**params, "reconcile_dag_id": RECONCILE_DAG_ID},
    )
    if latest.empty:
        return Reconciliation(available=False)
    run_id = str(latest.iat[0, 0])
    ranked = (
        "WITH ranked AS (SELECT entity, kind, field, external_id, row_number() OVER "
        "(PARTITION BY entity, kind, field ORDER BY external_id) AS nth "
        f"FROM {RECONCILIATION_TABLE} WHERE run_id = :run_id AND {where}) "
    )
    params = {**params, "run_id": run_id}
    groups = warehouse.query_frame(
        f"{ranked}SELECT entity, kind, field, count(*) AS n FROM ranked GROUP BY entity, kind, field "
        "ORDER BY entity, kind, field",
        params,
    )
    examples = warehouse.query_frame(
        f"{ranked}SELECT entity, kind, field, external_id FROM ranked "
        f"WHERE nth <= {RECONCILIATION_EXAMPLES} ORDER BY nth",
        params,
    )
    examples_of: dict[tuple, list[str]] = {}
    for row in examples.itertuples(index=False):
        examples_of.setdefault((row.entity, row.kind, _text(row.field)), []).append(str(row.external_id))
    return Reconciliation(
        available=True,
        run_id=run_id,
        checked_at=_datetime(latest.iat[0, 1]),
        groups=tuple(
            ReconciliationGroup(
                entity=str(row.entity),
                kind=str(row.kind),
                field=_text(row.field),
                rows=int(row.n),
                examples=tuple(examples_of.get((row.entity, row.kind, _text(row.field)), ())),
            )
            for row in groups.itertuples(index=False)
        ),
    )


def overview(
    warehouse: Warehouse,
    period: Period,
    *,
    data_source_uuid: str | None = None,
    grain: Grain = "day",
    dag_id: str | None = None,
) -> Overview:
    """Everything the page shows for one period and (optionally) one data source."""
    sources = list_data_sources(warehouse)
    chosen = next((s for s in sources if s.uuid == data_source_uuid), None)
    return Overview(
        period=period,
        data_source=chosen,
        data_sources=sources,
        runs=recent_runs(warehouse, period, data_source_uuid=data_source_uuid, dag_id=dag_id),
        rejects=rejects_by_rule(warehouse, period, data_source_uuid=data_source_uuid),
        funnel=lead_funnel(warehouse, period, grain=grain),
        reconciliation=latest_reconciliation(warehouse, data_source_uuid=data_source_uuid),
        has_runs_table=warehouse.table_exists(RUNS_TABLE),
    )


# ---- one id's story -------------------------------------------------------------------------------

_LOOKUP_TABLES = {"leads": "lead_id", "trials": "trial_id"}


def look_up(warehouse: Warehouse, source_id: str, *, data_source_uuid: str | None = None) -> Lookup:
    """Why a lead or trial is (not) in ChartMogul: its source row, every run that saw it and what
    that run did with it, its sync state and ChartMogul uuid, and whether it converted (merged)."""
    source_id = source_id.strip()
    source_rows: dict[str, dict[str, Any]] = {}
    for table, id_column in _LOOKUP_TABLES.items():
        if not warehouse.table_exists(table):
            continue
        frame = warehouse.query_frame(
            f"SELECT * FROM {table} WHERE {id_column} = :id ORDER BY updated_at DESC LIMIT 1",
            {"id": source_id},
        )
        if not frame.empty:
            source_rows[table] = {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}
    trial_ids: tuple[str, ...] = ()
    conversion: dict[str, Any] | None = None
    if "leads" in source_rows:
        if warehouse.table_exists("trials"):
            trial_ids = tuple(
                str(t)
                for t in warehouse.query_frame(
                    "SELECT DISTINCT trial_id FROM trials WHERE lead_id = :id ORDER BY trial_id",
                    {"id": source_id},
                )["trial_id"]
            )
        if warehouse.table_exists("conversions"):
            frame = warehouse.query_frame(
                "SELECT * FROM conversions WHERE lead_id = :id ORDER BY converted_at LIMIT 1",
                {"id": source_id},
            )
            if not frame.empty:
                conversion = {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}
    states = _states_of(warehouse, source_id, data_source_uuid)
    runs = _runs_that_saw(warehouse, source_id, source_rows, states, data_source_uuid)
    return Lookup(
        source_id=source_id,
        source_rows=source_rows,
        runs=runs,
        states=states,
        conversion=conversion,
        trial_ids=trial_ids,
    )


def _states_of(warehouse: Warehouse, source_id: str, data_source_uuid: str | None) -> tuple[StateRow, ...]:
    if not warehouse.table_exists(STATE_TABLE):
        return ()
    where = "external_id = :id" + (" AND data_source_uuid = :ds" if data_source_uuid else "")
    frame = warehouse.query_frame(
        "SELECT entity, data_source_uuid, status, chartmogul_uuid, synced_at, run_id, payload "
        f"FROM {STATE_TABLE} WHERE {where} ORDER BY entity, data_source_uuid",
        {"id": source_id, "ds": data_source_uuid} if data_source_uuid else {"id": source_id},
    )
    return tuple(
        StateRow(
            entity=str(row.entity),
            data_source_uuid=str(row.data_source_uuid),
            status=str(row.status),
            chartmogul_uuid=_text(row.chartmogul_uuid),
            synced_at=_datetime(row.synced_at) or datetime.min,
            run_id=str(row.run_id),
            last_error=_error_in_payload(row.payload),
        )
        for row in frame.itertuples(index=False)
    )


def _runs_that_saw(
    warehouse: Warehouse,
    source_id: str,
    source_rows: Mapping[str, Mapping[str, Any]],
    states: Sequence[StateRow],
    data_source_uuid: str | None,
) -> tuple[RunVerdict, ...]:
    """Runs that rejected the id, wrote its state, or extracted it (a full refresh after the source
    row's current `updated_at`, or a window holding it), newest first, with what each did."""
    if not warehouse.table_exists(RUNS_TABLE):
        return ()
    params: dict[str, Any] = {"id": source_id}
    seen = []
    if warehouse.table_exists(REJECTS_TABLE):
        seen.append(
            f"EXISTS (SELECT 1 FROM {REJECTS_TABLE} r WHERE r.run_id = u.run_id "
            "AND r.dag_id = u.dag_id AND r.source_id = :id)"
        )
    state_runs = sorted({s.run_id for s in states})
    for n, run_id in enumerate(state_runs):
        params[f"state_run_{n}"] = run_id
    if state_runs:
        seen.append(f"u.run_id IN ({', '.join(f':state_run_{n}' for n in range(len(state_runs)))})")
    updated = [row.get("updated_at") for row in source_rows.values() if row.get("updated_at")]
    if updated:
        params["updated_at"] = max(updated)
        params["leads_trials_dag"] = LEADS_TRIALS_DAG_ID
        seen.append(
            "(u.dag_id = :leads_trials_dag AND ((u.full_refresh AND u.started_at >= :updated_at) "
            "OR (u.window_start <= :updated_at AND :updated_at < u.window_end)))"
        )
    if not seen:
        return ()
    ds_filter = " AND u.data_source_uuid = :ds" if data_source_uuid else ""
    if data_source_uuid:
        params["ds"] = data_source_uuid
    frame = warehouse.query_frame(
        "SELECT u.run_id, u.dag_id, u.started_at, u.outcome, u.dry_run, u.details FROM "
        f"{RUNS_TABLE} u WHERE ({' OR '.join(seen)}){ds_filter} "
        f"ORDER BY u.started_at DESC LIMIT {LOOKUP_RUN_LIMIT}",
        params,
    )
    reasons = _reject_reasons(warehouse, source_id)
    state_by_run = {s.run_id: s for s in states}
    verdicts = []
    for row in frame.itertuples(index=False):
        run_id, dag_id = str(row.run_id), str(row.dag_id)
        rejected = reasons.get((run_id, dag_id))
        state = state_by_run.get(run_id)
        api_error = _api_error_in_details(row.details, source_id)
        if rejected:
            waiting = state is not None and state.status == "waiting"
            verdict, detail = ("waiting" if waiting else "rejected"), rejected
        elif api_error:
            verdict, detail = "failed", api_error
        elif state is not None:
            verdict = state.status
            detail = f"sync state {state.status}" + (
                f", ChartMogul uuid {state.chartmogul_uuid}" if state.chartmogul_uuid else ""
            )
        else:
            verdict = "extracted"
            detail = "valid; sent, or unchanged since an earlier run" if not row.dry_run else "dry run"
        verdicts.append(
            RunVerdict(
                run_id=run_id,
                dag_id=dag_id,
                started_at=_datetime(row.started_at) or datetime.min,
                outcome=str(row.outcome),
                dry_run=bool(row.dry_run),
                verdict=verdict,
                detail=detail,
            )
        )
    return tuple(verdicts)


def _reject_reasons(warehouse: Warehouse, source_id: str) -> dict[tuple[str, str], str]:
    if not warehouse.table_exists(REJECTS_TABLE):
        return {}
    frame = warehouse.query_frame(
        f"SELECT run_id, dag_id, entity, reason FROM {REJECTS_TABLE} WHERE source_id = :id", {"id": source_id}
    )
    reasons: dict[tuple[str, str], str] = {}
    for row in frame.itertuples(index=False):
        key = (str(row.run_id), str(row.dag_id))
        text = f"{row.entity}: {row.reason}"
        reasons[key] = f"{reasons[key]}; {text}" if key in reasons else text
    return reasons


def _api_error_in_details(details: Any, source_id: str) -> str | None:
    """The API error a run's details (`mogulflow_runs.details`) keep for this id, if any."""
    try:
        parsed = json.loads(details) if isinstance(details, str) and details else {}
    except ValueError:
        return None
    for errors in (parsed.get("api_errors") or {}).values():
        for error in errors or ():
            if isinstance(error, Mapping) and error.get("external_id") == source_id:
                status = error.get("status")
                return f"{error.get('message')}" + (f" (HTTP {status})" if status else "")
    return None


def _error_in_payload(payload: Any) -> str | None:
    try:
        parsed = json.loads(payload) if isinstance(payload, str) and payload else {}
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, Mapping) else None
    return str(error) if error else None


# ---- values as the warehouse hands them -----------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _datetime(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime()


def _plain(value: Any) -> Any:
    """A frame cell as a plain value for a page or JSON: None, str, int, float or datetime."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value
