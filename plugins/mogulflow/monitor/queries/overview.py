"""The page's verdict: how the latest runs ended, and the numbers at the top of the page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mogulflow.monitor.queries.deletions import Deletions, deletions
from mogulflow.monitor.queries.funnel import Funnel, lead_funnel
from mogulflow.monitor.queries.merges import ChartMogulMerge, chartmogul_merges
from mogulflow.monitor.queries.periods import Grain, Period
from mogulflow.monitor.queries.reconciliation import Reconciliation, latest_reconciliation
from mogulflow.monitor.queries.rejects import Rejects, rejects_by_rule
from mogulflow.monitor.queries.runs import DataSource, RunRow, list_data_sources, recent_runs
from mogulflow.values.constants import (
    RUNS_TABLE,
)
from mogulflow.warehouse.connection import Warehouse


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
    # Leads ChartMogul merged on its own, and how the merge DAG counted them.
    chartmogul_merges: tuple[ChartMogulMerge, ...] = ()
    # What the runs deleted from ChartMogul, approvals a person owes, erasures a person must finish.
    deletions: Deletions = field(default_factory=Deletions)


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
    reconciliation = latest_reconciliation(warehouse, data_source_uuid=data_source_uuid)
    return Overview(
        period=period,
        data_source=chosen,
        data_sources=sources,
        runs=recent_runs(warehouse, period, data_source_uuid=data_source_uuid, dag_id=dag_id),
        rejects=rejects_by_rule(warehouse, period, data_source_uuid=data_source_uuid),
        funnel=lead_funnel(warehouse, period, grain=grain),
        reconciliation=reconciliation,
        has_runs_table=warehouse.table_exists(RUNS_TABLE),
        chartmogul_merges=chartmogul_merges(warehouse, reconciliation, data_source_uuid=data_source_uuid),
        deletions=deletions(warehouse, period, data_source_uuid=data_source_uuid),
    )
