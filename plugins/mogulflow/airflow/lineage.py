"""Assets and lineage: what mogulflow tells Airflow about the data it reads and writes.

- **Asset events.** The load tasks declare the assets below as outlets; when one succeeds, Airflow
  records an asset event whose extra carries the run's counts and rejects by rule
  (`load_event_extra`), so a downstream DAG can `schedule=[CHARTMOGUL_CUSTOMERS]` and read them.
  The assets' names and URIs are fixed (they cannot depend on a run's params, since outlets are
  declared when the DAG is parsed); the data source of a run is in the event's extra.
- **Hook lineage.** extract reports the source tables as input assets and the loads report the
  ChartMogul data source as output asset, through Airflow's hook-lineage collector; with the
  OpenLineage provider (or any hook-lineage reader) installed, a lineage tool shows warehouse
  tables → ChartMogul. Without a reader, Airflow's collector does nothing. Lineage never fails a
  task: a problem building it is logged and skipped.

Imported at DAG parse time: only `airflow.sdk` at the top.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import Asset

if TYPE_CHECKING:
    from mogulflow.values.run_settings import RunSettings
    from mogulflow.values.step_reports import LoadReport, StagedExtract

log = logging.getLogger(__name__)

# The group Airflow's asset views list them under.
ASSET_GROUP = "chartmogul"
# The assets the loads write. The host part is the connection id: one Airflow deployment's
# ChartMogul account, whatever data source a run writes into.
CHARTMOGUL_CUSTOMERS = Asset(
    name="chartmogul_customers", uri="chartmogul://chartmogul_default/customers", group=ASSET_GROUP
)
CHARTMOGUL_TRIAL_INVOICES = Asset(
    name="chartmogul_trial_invoices", uri="chartmogul://chartmogul_default/trial_invoices", group=ASSET_GROUP
)
CHARTMOGUL_CUSTOMER_MERGES = Asset(
    name="chartmogul_customer_merges",
    uri="chartmogul://chartmogul_default/customer_merges",
    group=ASSET_GROUP,
)
# Which asset an entity's load writes (by `Entity` value: the DAG files must not import pandas).
ASSET_OF_ENTITY: Mapping[str, Asset] = {
    "lead": CHARTMOGUL_CUSTOMERS,
    "trial": CHARTMOGUL_TRIAL_INVOICES,
    "conversion": CHARTMOGUL_CUSTOMER_MERGES,
}
# The schema a table URI names when the warehouse has schemas (the default SQL reads unqualified names).
DEFAULT_SCHEMA = {"postgres": "public", "duckdb": "main"}


# ---- asset events --------------------------------------------------------------------------------


def load_event_extra(
    run: RunSettings, data_source_uuid: str | None, part: StagedExtract | None, report: LoadReport
) -> dict[str, Any]:
    """The extra of a load's asset event: the run, its window, the entity's counts, rejects by rule."""
    window = run.window
    return {
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "entity": str(report.entity),
        "data_source_name": run.data_source_name,
        "data_source_uuid": data_source_uuid,
        "window_start": window.start.isoformat() if window.start else None,
        "window_end": window.end.isoformat() if window.end else None,
        "full_refresh": window.full_refresh,
        "dry_run": run.dry_run,
        "extracted": part.extracted if part else 0,
        "rejected": part.rejected if part else 0,
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failed": report.failed,
        "rejects_by_rule": dict(part.rejects_by_rule) if part else {},
    }


def publish_load_event(context: Mapping[str, Any], entity: str, extra: Mapping[str, Any]) -> None:
    """Put `extra` on the asset event the running task emits for `entity`'s asset, if it declares it."""
    asset = ASSET_OF_ENTITY.get(entity)
    task = context.get("task")
    if asset is None or task is None or asset not in (getattr(task, "outlets", None) or ()):
        return
    context["outlet_events"][asset].extra = dict(extra)


# ---- hook lineage --------------------------------------------------------------------------------


def table_uri(conn_type: str, host: str | None, port: int | None, database: str | None, table: str) -> str:
    """A source table as an asset URI: `postgres://host:5432/db/public/leads` (the form the Postgres
    provider and OpenLineage use), `duckdb://localhost/path/to/file.duckdb/main/leads`."""
    kind = "postgres" if conn_type.lower().startswith("postgres") else conn_type.lower()
    schema = DEFAULT_SCHEMA.get(kind)
    if kind == "duckdb":
        return f"duckdb://localhost/{(host or '').lstrip('/')}/{schema}/{table}"
    location = f"{host or 'localhost'}:{port or 5432}" if kind == "postgres" else (host or "localhost")
    parts = [p for p in (database, schema, table) if p]
    return f"{kind}://{location}/{'/'.join(parts)}"


def report_source_tables(tables: Iterable[str], conn_id: str | None = None) -> None:
    """Tell the hook-lineage collector that this task read `tables` of the warehouse connection."""
    try:
        from airflow.sdk import BaseHook

        from mogulflow.values.constants import WAREHOUSE_CONN_ID

        connection = BaseHook.get_connection(conn_id or WAREHOUSE_CONN_ID)
        hook = connection.get_hook()
        collector = get_hook_lineage_collector()
        for table in tables:
            uri = table_uri(
                connection.conn_type or "", connection.host, connection.port, connection.schema, table
            )
            collector.add_input_asset(context=hook, uri=uri)
    except Exception as error:
        log.info("Hook lineage of the source tables skipped: %s", error)


def data_source_uri(base_url: str, data_source_uuid: str) -> str:
    """The ChartMogul data source as an asset URI: `chartmogul://api.chartmogul.com/data_sources/ds_…`."""
    host = urlsplit(base_url).netloc or "api.chartmogul.com"
    return f"chartmogul://{host}/data_sources/{data_source_uuid}"


def report_data_source_written(data_source_uuid: str | None, conn_id: str | None = None) -> None:
    """Tell the hook-lineage collector that this task wrote into the ChartMogul data source."""
    if not data_source_uuid:
        return
    try:
        from mogulflow.airflow.hook import ChartMogulHook
        from mogulflow.values.constants import CHARTMOGUL_CONN_ID

        hook = ChartMogulHook(chartmogul_conn_id=conn_id or CHARTMOGUL_CONN_ID)
        uri = data_source_uri(hook.get_client_settings().base_url, data_source_uuid)
        get_hook_lineage_collector().add_output_asset(context=hook, uri=uri)
    except Exception as error:
        log.info("Hook lineage of the ChartMogul data source skipped: %s", error)


def get_hook_lineage_collector():
    """Airflow's hook-lineage collector (`airflow.sdk.lineage` from 3.2, `airflow.lineage.hook` in 3.1)."""
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector as collector
    except ImportError:  # Airflow 3.1
        from airflow.lineage.hook import get_hook_lineage_collector as collector
    return collector()
