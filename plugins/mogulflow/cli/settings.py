"""`mogulflow settings`: every setting mogulflow reads, as one Markdown table (the README's).

Each row names where the setting lives (a connection, an extra of a connection, an Airflow Variable,
an environment variable of every Airflow component, or a param of a DAG's trigger form), its default
and its meaning. Defaults come from the constants the code reads; the params come from the DAGs'
own `Param` objects; `tests/test_settings_table.py` fails when a setting the code reads is missing
here or when the README's table is not this command's output.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from mogulflow.airflow.dag_params import (
    DEFAULT_TASK_RETRIES,
    TASK_RETRIES_ENV,
    leads_trials_params,
    merge_params,
    reconcile_params,
)
from mogulflow.airflow.hook import CONN_TYPE, DEFAULT_SCHEME
from mogulflow.airflow.notifications import (
    ALERT_REJECT_RATIO_VARIABLE,
    DEADLINE_MINUTES_ENV,
    DEFAULT_ALERT_REJECT_RATIO,
    SLACK_CONN_ID,
)
from mogulflow.airflow.resources import DEFAULT_DUCKDB_LOCK_WAIT_SECONDS, DUCKDB_LOCK_WAIT_ENV, POOL_SLOTS
from mogulflow.chartmogul.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_TIMEOUT,
)
from mogulflow.load.bulk import BULK_THRESHOLD_ENV, DEFAULT_BULK_THRESHOLD
from mogulflow.load.progress import DEFAULT_PROGRESS_SECONDS, PROGRESS_SECONDS_ENV
from mogulflow.values.constants import (
    CHARTMOGUL_CONN_ID,
    LEADS_TRIALS_DAG_ID,
    MERGE_DAG_ID,
    POOL_NAME,
    RECONCILE_DAG_ID,
    WAREHOUSE_CONN_ID,
)
from mogulflow.warehouse.part_stores import STAGING_DIR_ENV, STAGING_URL_ENV
from mogulflow.warehouse.sql_files import SQL_DIR_ENV


@dataclass(frozen=True)
class Setting:
    """One setting: where it is set, its name, its default (as text) and what it does."""

    where: str
    name: str
    default: str
    meaning: str


def _number(value: float) -> str:
    return f"{value:g}"


def connection_settings() -> list[Setting]:
    """The connections mogulflow uses, and the pool."""
    return [
        Setting(
            "connection",
            CHARTMOGUL_CONN_ID,
            "required",
            f"type `{CONN_TYPE}`: password = API key; host = API base URL without `/v1` "
            f"(empty: `{DEFAULT_BASE_URL}`)",
        ),
        Setting(
            "connection",
            WAREHOUSE_CONN_ID,
            "required",
            "the warehouse: type `duckdb` (host = file path), `postgres`, `snowflake`, "
            "`google_cloud_platform` (BigQuery) or `redshift`",
        ),
        Setting(
            "connection",
            SLACK_CONN_ID,
            "none: alerts are a WARNING log line",
            "type `slackwebhook`: alerts go to that Slack channel (`mogulflow[slack]`)",
        ),
        Setting(
            "pool",
            POOL_NAME,
            f"{POOL_SLOTS} slot (`mogulflow pool` creates it)",
            "every task that writes to ChartMogul runs in it, so concurrent runs share the rate limit",
        ),
    ]


def extra_settings() -> list[Setting]:
    """The extras of the ChartMogul connection."""
    where = f"extra of `{CHARTMOGUL_CONN_ID}`"
    return [
        Setting(
            where,
            "requests_per_second",
            _number(DEFAULT_REQUESTS_PER_SECOND),
            "client-side pace; ChartMogul allows 40 per account",
        ),
        Setting(
            where,
            "max_connections",
            str(DEFAULT_MAX_CONNECTIONS),
            "parallel requests; ChartMogul answers 503 above 20",
        ),
        Setting(where, "timeout", _number(DEFAULT_TIMEOUT), "seconds per request"),
        Setting(
            where,
            "scheme",
            DEFAULT_SCHEME,
            "scheme of a host given without one (URI-style `AIRFLOW_CONN_*`)",
        ),
    ]


def variable_settings() -> list[Setting]:
    """Airflow Variables."""
    return [
        Setting(
            "Airflow Variable",
            ALERT_REJECT_RATIO_VARIABLE,
            _number(DEFAULT_ALERT_REJECT_RATIO),
            "a successful run whose reject share of an entity is above this still alerts",
        )
    ]


def environment_settings() -> list[Setting]:
    """Environment variables, read by every Airflow component that runs mogulflow's tasks."""
    where = "environment variable"
    return [
        Setting(
            where,
            SQL_DIR_ENV,
            "none: the SQL in the package",
            "a folder of your own SQL files; each replaces the package's file of the same name "
            "(`mogulflow sql --into DIR` copies the defaults there)",
        ),
        Setting(
            where,
            STAGING_URL_ENV,
            "none: the warehouse's table `mogulflow_staging`",
            "where tasks hand validated rows to each other: an object-store URL (`s3://bucket/prefix`; "
            "install its fsspec filesystem)",
        ),
        Setting(
            where,
            STAGING_DIR_ENV,
            "none",
            "a local folder for the hand-over instead (one machine only)",
        ),
        Setting(
            where,
            TASK_RETRIES_ENV,
            str(DEFAULT_TASK_RETRIES),
            "Airflow retries of each task (after 1, 2, ... minutes, at most 10)",
        ),
        Setting(
            where,
            BULK_THRESHOLD_ENV,
            str(DEFAULT_BULK_THRESHOLD),
            "new objects in one run from which loads use ChartMogul's bulk JSON imports; 0 = never",
        ),
        Setting(
            where,
            DUCKDB_LOCK_WAIT_ENV,
            _number(DEFAULT_DUCKDB_LOCK_WAIT_SECONDS),
            "seconds a task waits for a DuckDB warehouse file locked by a concurrent run",
        ),
        Setting(
            where,
            PROGRESS_SECONDS_ENV,
            _number(DEFAULT_PROGRESS_SECONDS),
            "seconds between a long load's progress lines in the task log",
        ),
        Setting(
            where,
            DEADLINE_MINUTES_ENV,
            "0: no deadline",
            "minutes after a run is queued by which it must be done, else a deadline alert",
        ),
    ]


def _param_default(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _number(value)
    return f'"{value}"' if isinstance(value, str) else str(value)


def param_settings() -> list[Setting]:
    """The params of each DAG's trigger form (`--conf`), straight from the DAGs' `Param` objects."""
    rows = []
    for dag_id, params in (
        (LEADS_TRIALS_DAG_ID, leads_trials_params()),
        (MERGE_DAG_ID, merge_params()),
        (RECONCILE_DAG_ID, reconcile_params()),
    ):
        for name, param in params.items():
            rows.append(Setting(f"param of `{dag_id}`", name, _param_default(param.value), param.description))
    return rows


def all_settings() -> list[Setting]:
    """Every setting, in the table's order."""
    return [
        *connection_settings(),
        *extra_settings(),
        *variable_settings(),
        *environment_settings(),
        *param_settings(),
    ]


def markdown_table(settings: Sequence[Setting] | None = None) -> str:
    """The settings as a Markdown table."""
    lines = ["| setting | where | default | meaning |", "|---|---|---|---|"]
    for setting in all_settings() if settings is None else settings:
        meaning = " ".join(str(setting.meaning).split()).replace("|", "\\|")
        lines.append(f"| `{setting.name}` | {setting.where} | {setting.default} | {meaning} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow settings") -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    parser.parse_args(argv)
    print(markdown_table(), end="")
    return 0
