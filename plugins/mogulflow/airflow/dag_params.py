"""What the DAGs declare alike: task defaults, and the params of each trigger form.

Imported at DAG parse time: keep it free of heavy imports (no pandas, no mogulflow steps).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Param

from mogulflow.values.constants import (
    DEFAULT_DATA_SOURCE_NAME,
    DEFAULT_LOOKUP_INTERVAL_SECONDS,
    DEFAULT_LOOKUP_TIMEOUT_SECONDS,
    DEFAULT_MAX_DELETE_RATIO,
    DEFAULT_MAX_REJECT_RATIO,
    DEFAULT_MIN_REJECTS_TO_FAIL,
    POOL_NAME,
)

__all__ = [
    "DEFAULT_TASK_RETRIES",
    "POOL_NAME",
    "TASK_RETRIES_ENV",
    "default_args",
    "leads_trials_params",
    "merge_params",
    "reconcile_params",
]

TASK_RETRIES_ENV = "MOGULFLOW_TASK_RETRIES"
DEFAULT_TASK_RETRIES = 2


def default_args() -> dict[str, Any]:
    """Retries with exponential backoff for lost workers and outages.

    Transient API trouble is retried inside the client. `MOGULFLOW_TASK_RETRIES=0` turns task
    retries off (the test suite does: `dag.test()` sleeps through retry delays).
    """
    return {
        "owner": "data",
        "retries": int(os.environ.get(TASK_RETRIES_ENV) or DEFAULT_TASK_RETRIES),
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }


def _window_params(what: str) -> dict[str, Param]:
    return {
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description=f"Ignore the data interval: read every {what}.",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            format="date-time",  # the trigger form offers a date picker; Airflow refuses non-dates
            title="Window start",
            description="Explicit window start for manual runs (ISO-8601, UTC), overriding the data "
            "interval.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window end",
            description="Explicit window end (exclusive; ISO-8601, UTC). Defaults to the run's start when "
            "only start is set.",
        ),
    }


def _data_source_param(description: str) -> Param:
    return Param(
        DEFAULT_DATA_SOURCE_NAME, type="string", minLength=1, title="Data source", description=description
    )


def leads_trials_params() -> dict[str, Param]:
    """The trigger form of `chartmogul_leads_trials` (the contract's params)."""
    return {
        **_window_params("row"),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Validate and compare with the sync state, report what would be created, updated or "
            "left alone; write nothing to ChartMogul or the sync state.",
        ),
        "data_source_name": _data_source_param(
            "The ChartMogul custom data source to write into; created if missing."
        ),
        "max_reject_ratio": Param(
            DEFAULT_MAX_REJECT_RATIO,
            type="number",
            minimum=0,
            maximum=1,
            title="Max reject ratio",
            description="Above this share of rejected rows in an entity (rejected ÷ extracted, duplicates "
            "counted), the run fails before loading that entity, once at least 'Min rejects to fail' rows "
            "of it were rejected.",
        ),
        "min_rejects_to_fail": Param(
            DEFAULT_MIN_REJECTS_TO_FAIL,
            type="integer",
            minimum=0,
            title="Min rejects to fail",
            description="How many rejected rows of an entity it takes before 'Max reject ratio' can fail the "
            "run. Below it (e.g. 1 bad plan of 15 on a nightly window: 6.7%) the entity is loaded, the run "
            "ends success_with_rejects and the rejects alert fires; from it on, the ratio decides as before. "
            "1 = fail on any share above the ratio (the behaviour before this param).",
        ),
        "mirror_deletes": Param(
            False,
            type="boolean",
            title="Mirror deletes",
            description="With full refresh only: delete from ChartMogul what mogulflow created and the "
            "source no longer holds (a customer whose lead_id left `leads`, with its invoices; an invoice "
            "whose trial_id left `trials`). Rejected rows count as present; merged customers, other data "
            "sources and what mogulflow did not create are never deleted. See docs/deletes.md.",
        ),
        "max_delete_ratio": Param(
            DEFAULT_MAX_DELETE_RATIO,
            type="number",
            minimum=0,
            maximum=1,
            title="Max delete ratio",
            description="Above this share of the customers mogulflow synced in the data source (or on an "
            "empty extract), mirror deletes wait for a person's approval in Browse → Required actions.",
        ),
        "approve_deletes": Param(
            False,
            type="boolean",
            title="Approve deletes",
            description="Approve this run's mirror deletes in advance (airflow dags test, scripted "
            "backfills): the guard does not wait for a person.",
        ),
        "reconcile": Param(
            False,
            type="boolean",
            title="Reconcile",
            description="After a successful sync, compare the data source in ChartMogul with the warehouse "
            "and record the differences in mogulflow_reconciliation (as chartmogul_reconcile does; "
            "nothing is re-sent). Skipped when false.",
        ),
    }


def merge_params() -> dict[str, Param]:
    """The trigger form of `chartmogul_merge_converted_leads` (the contract's params)."""
    return {
        **_window_params("conversion"),
        "data_source_name": _data_source_param(
            "The ChartMogul custom data source chartmogul_leads_trials writes the leads into."
        ),
        "lookup_interval_seconds": Param(
            DEFAULT_LOOKUP_INTERVAL_SECONDS,
            type="number",
            exclusiveMinimum=0,
            title="Lookup interval (s)",
            description="How often to look for paying customers that do not exist in ChartMogul yet.",
        ),
        "lookup_timeout_seconds": Param(
            DEFAULT_LOOKUP_TIMEOUT_SECONDS,
            type="number",
            minimum=0,
            title="Lookup timeout (s)",
            description="How long to keep looking before a conversion counts as failed (retried next run).",
        ),
    }


def reconcile_params() -> dict[str, Param]:
    """The trigger form of `chartmogul_reconcile` (the contract's params)."""
    return {
        "data_source_name": _data_source_param(
            "The ChartMogul custom data source chartmogul_leads_trials writes into: the one to reconcile."
        ),
        "resend": Param(
            False,
            type="boolean",
            title="Re-send the rows that differ",
            description="Mark the rows missing from ChartMogul or different there, so that the next "
            "chartmogul_leads_trials run re-sends them. Extra objects in ChartMogul are only reported. "
            "Reconciliation itself never writes to ChartMogul.",
        ),
    }
