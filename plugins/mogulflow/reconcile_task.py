"""The DAG edge of reconciliation: the task body of `chartmogul_reconcile`, and the optional last task of
`chartmogul_leads_trials` (param `reconcile`).

Each reads the run's params from Airflow's context, opens the warehouse and the ChartMogul client
from their connections and calls the Airflow-free step (`mogulflow.reconcile.run_reconciliation`).
Drift is data, so a reconciliation that finds differences succeeds; one that cannot finish fails,
at once for a mistake (`failures.is_permanent`), retried for an outage.

Imported at DAG parse time: heavy imports stay inside the functions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from airflow.sdk import get_current_context

from mogulflow.defaults import DEFAULT_DATA_SOURCE_NAME
from mogulflow.xcom import Json

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mogulflow.reconcile import ReconcileRequest


def reconcile() -> Json:
    """`chartmogul_reconcile`: reconcile the data source named by the params; re-send if asked."""
    context = get_current_context()
    params = context["params"]
    return _run(_request(context, params.get("data_source_name"), resend=bool(params.get("resend", False))))


def reconcile_after_sync(data_source_uuid: str | None) -> Json:
    """`chartmogul_leads_trials`' last task: reconcile the run's data source when `reconcile` is true.

    Skipped when the param is false, or when the run had no data source (a dry run before the
    first sync). It only reports: re-sending is `chartmogul_reconcile`'s `resend`.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    context = get_current_context()
    params = context["params"]
    if not params.get("reconcile", False):
        raise AirflowSkipException("param reconcile is false: no reconciliation after this sync")
    if data_source_uuid is None:
        raise AirflowSkipException("the data source does not exist in ChartMogul yet: nothing to reconcile")
    return _run(_request(context, params.get("data_source_name"), resend=False))


def _request(context: Context, data_source_name: object, *, resend: bool) -> ReconcileRequest:
    from mogulflow.reconcile import ReconcileRequest

    dag_run = context["dag_run"]
    return ReconcileRequest(
        run_id=dag_run.run_id,
        dag_id=dag_run.dag_id,
        data_source_name=str(data_source_name or DEFAULT_DATA_SOURCE_NAME).strip(),
        resend=resend,
        started_at=datetime.now(UTC),
    )


def _run(request: ReconcileRequest) -> Json:
    from airflow.sdk.exceptions import AirflowFailException

    from mogulflow.airflow_resources import chartmogul_client, open_warehouse
    from mogulflow.failures import describe, is_permanent
    from mogulflow.reconcile import run_reconciliation
    from mogulflow.xcom import to_xcom

    warehouse = open_warehouse()
    try:
        with chartmogul_client() as client:
            report = run_reconciliation(warehouse, client, request)
    except Exception as error:
        if is_permanent(error):
            raise AirflowFailException(describe(error)) from error
        raise
    finally:
        warehouse.close()
    return to_xcom(report)
