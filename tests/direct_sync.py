"""Run `chartmogul_leads_trials`'s steps without Airflow, and read back what a sync left behind.

`run_sync_directly` calls the Airflow-free steps (`mogulflow.sync.leads_trials`,
`mogulflow.record.account`) in the order and with the trigger rules of the DAG's tasks, so a test can
run thirty windows in seconds.
`synced_account` projects a sandbox's data source onto the fields mogulflow maps, for comparing two syncs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from mogulflow.chartmogul.client import ChartMogulClient
from mogulflow.chartmogul.data_sources import ensure_data_source
from mogulflow.chartmogul.retry import RetryPolicy
from mogulflow.deletes.plan import decide_without_asking, plan_deletes
from mogulflow.deletes.run import carry_out_deletes, settle_interrupted_deletes
from mogulflow.load.entity_step import StepInputs
from mogulflow.record.account import RunAccount, summarize_run, write_run
from mogulflow.record.rejects import write_rejects
from mogulflow.sync import leads_trials as sync
from mogulflow.values.deletions import Approval, ApprovalDecision
from mogulflow.values.entities import Entity
from mogulflow.values.errors import RejectRatioExceeded
from mogulflow.values.pipelines import LEADS_TRIALS_ACCOUNT
from mogulflow.values.run_settings import resolve_settings
from mogulflow.values.run_summary import RunSummary
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse import staging
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.deletions import drop_plan

DAG_ID = "chartmogul_leads_trials"
API_KEY = "test-key-abcdef"

# Retries as the real client does them, but without the seconds of backoff.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.005, max_delay=0.02, max_elapsed=10.0)


@contextmanager
def sandbox_client(url: str, *, retry: RetryPolicy = FAST_RETRY) -> Iterator[ChartMogulClient]:
    """A real ChartMogul client against a sandbox, paced far above ChartMogul's limit."""
    with ChartMogulClient(
        base_url=url, api_key=API_KEY, requests_per_second=2000, max_connections=10, retry=retry
    ) as client:
        yield client


def run_sync_directly(
    warehouse_path: str | Path, client: ChartMogulClient, *, run_id: str, **params: Any
) -> RunSummary:
    """One run of the DAG's steps (params as the DAG's `--conf`); returns the account it recorded."""
    return run_sync_account(warehouse_path, client, run_id=run_id, **params).summary


def run_sync_account(
    warehouse_path: str | Path,
    client: ChartMogulClient,
    *,
    run_id: str,
    person_answers: ApprovalDecision = ApprovalDecision.REJECTED,
    **params: Any,
) -> RunAccount:
    """`run_sync_directly`, answering the whole account (summary and details, what alerts read).

    Deletes the guard holds back get `person_answers` as the answer of the person asked.
    """
    settings = resolve_settings(
        params, run_id=run_id, dag_id=DAG_ID, data_interval_start=None, data_interval_end=None
    )
    data_source_uuid = ensure_data_source(client, settings.data_source_name, dry_run=settings.dry_run)
    warehouse = Warehouse.open_duckdb(str(warehouse_path))
    try:
        report = sync.extract_and_validate(warehouse, settings, data_source_uuid)
        write_rejects(warehouse, settings, report, data_source_uuid)
        settle_interrupted_deletes(warehouse, client, settings, data_source_uuid)
        plan = plan_deletes(warehouse, settings, data_source_uuid, report)
        inputs = StepInputs(warehouse, client, settings, data_source_uuid, report)
        loads: dict[Entity, LoadReport | None] = {}
        failures: list[str] = []
        # upsert_customers runs even when upsert_plans failed; import_trial_invoices needs customers.
        for entity, task_id in (
            (Entity.PLAN, "upsert_plans"),
            (Entity.LEAD, "upsert_customers"),
            (Entity.TRIAL, "import_trial_invoices"),
            (Entity.ATTRIBUTE, "sync_lead_attributes"),
            (Entity.TAG, "sync_lead_tags"),
        ):
            if entity is Entity.TRIAL and "task upsert_customers did not finish" in failures:
                loads[entity] = None
                continue
            try:
                loads[entity] = sync.load_entity(inputs, entity)
            except RejectRatioExceeded:
                loads[entity] = None
                failures.append(f"task {task_id} did not finish")
        approval = decide_without_asking(plan, settings) or Approval(person_answers, by="a person")
        deletes = carry_out_deletes(warehouse, client, settings, data_source_uuid, approval)
        account = summarize_run(
            settings, LEADS_TRIALS_ACCOUNT, report, loads, task_failures=failures, deletes=deletes
        )
        write_run(warehouse, account, data_source=(settings.data_source_name, data_source_uuid))
        staging.remove_run(warehouse, DAG_ID, run_id)
        drop_plan(warehouse, run_id=run_id)
    finally:
        warehouse.close()
    return account


# ---- reading the outcome ------------------------------------------------------------------------

CUSTOMER_FIELDS = (
    "external_id",
    "name",
    "email",
    "country",
    "state",
    "city",
    "zip",
    "lead_created_at",
    "free_trial_started_at",
)
LINE_ITEM_FIELDS = (
    "type",
    "external_id",
    "subscription_external_id",
    "service_period_start",
    "service_period_end",
    "amount_in_cents",
    "quantity",
)


def synced_account(state: Any, data_source_name: str = "Leads") -> dict[str, Any]:
    """Customers, plans and invoices of one data source, by external id, without uuids or sequence.

    Each value is a list, so that a duplicate (two objects with one external id) shows as such.
    """
    source = state.data_source_by_name(data_source_name)
    if source is None:
        return {"customers": {}, "plans": {}, "invoices": {}}
    ds = source["uuid"]
    customers: dict[str, list[tuple]] = {}
    external_by_customer_uuid: dict[str, str] = {}
    for customer in state.customers(ds):
        customers.setdefault(customer["external_id"], []).append(tuple(customer[f] for f in CUSTOMER_FIELDS))
        external_by_customer_uuid[customer["uuid"]] = customer["external_id"]
    plans: dict[str, list[tuple]] = {}
    plan_external_by_uuid: dict[str, str] = {}
    for plan in state.plans(ds):
        plans.setdefault(plan["external_id"], []).append(
            (plan["name"], plan["interval_count"], plan["interval_unit"])
        )
        plan_external_by_uuid[plan["uuid"]] = plan["external_id"]
    invoices: dict[str, list[tuple]] = {}
    for invoice in state.invoices(data_source_uuid=ds):
        lines = tuple(
            (*(line.get(f) for f in LINE_ITEM_FIELDS), plan_external_by_uuid.get(line["plan_uuid"]))
            for line in invoice["line_items"]
        )
        invoices.setdefault(invoice["external_id"], []).append(
            (
                invoice["date"],
                invoice["currency"],
                invoice["customer_external_id"],
                external_by_customer_uuid.get(invoice["customer_uuid"]),
                lines,
            )
        )
    return {"customers": customers, "plans": plans, "invoices": invoices}


def duplicated(account: dict[str, Any]) -> dict[str, list[str]]:
    """External ids held by more than one object, per kind (empty lists when there are none)."""
    return {kind: sorted(k for k, v in objects.items() if len(v) > 1) for kind, objects in account.items()}


def query(path: str | Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Rows of one query on the DuckDB warehouse, through a short-lived read-only connection."""
    connection = duckdb.connect(str(path), read_only=True)
    try:
        return connection.execute(sql, params or []).fetchall()
    finally:
        connection.close()


def run_row(path: str | Path, run_id: str) -> dict[str, Any]:
    """The run's row of `mogulflow_runs` as a dict."""
    connection = duckdb.connect(str(path), read_only=True)
    try:
        cursor = connection.execute("SELECT * FROM mogulflow_runs WHERE run_id = ?", [run_id])
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        connection.close()
    assert len(rows) == 1, f"expected one mogulflow_runs row for {run_id}, found {len(rows)}"
    return dict(zip(columns, rows[0], strict=True))


def assert_account_adds_up(row: dict[str, Any]) -> None:
    """extracted = created + updated + unchanged + rejected + failed, for every loaded entity."""
    for prefix in ("leads", "plans", "trials"):
        parts = [row[f"{prefix}_{k}"] for k in ("created", "updated", "unchanged", "rejected", "failed")]
        assert row[f"{prefix}_extracted"] == sum(parts), (prefix, row)
