"""Failures: sort an error by what a retry can do, and say it in one line a person can act on.

A mistake (a refused API key, a missing connection, table or column, SQL that does not parse, a
param that makes no sense) fails its task at once: retrying cannot fix it and only delays the
alert. An outage (connection refused, a timeout, 5xx, 429) is retried, by the client within its
budget and by Airflow within the task's retries.
"""

from __future__ import annotations

from mogulflow.chartmogul.errors import (
    AuthenticationError,
    ChartMogulError,
    CircuitOpenError,
    RateLimitedError,
    TransientError,
)
from mogulflow.values.errors import RejectRatioExceeded, SetupError

# PostgreSQL SQLSTATE classes that are mistakes, not outages: 42 syntax error or undefined
# table/column, 28 invalid authorization, 3D unknown database, 3F unknown schema.
PERMANENT_SQLSTATE_CLASSES = frozenset({"42", "28", "3D", "3F"})
# DuckDB's exceptions for SQL that cannot work as written.
PERMANENT_DUCKDB_ERRORS = frozenset({"CatalogException", "BinderException", "ParserException"})
# Airflow's "connection not defined", matched by name: this module does not import Airflow.
MISSING_CONNECTION_ERRORS = frozenset({"AirflowNotFoundException", "ConnectionNotFound"})
# A one-line message is cut here: the full error stays in the task log.
MAX_MESSAGE_CHARS = 600


class Outage(RuntimeError):
    """Something mogulflow depends on is down or unreachable: a retry may fix it."""


def is_permanent(error: BaseException) -> bool:
    """Whether no retry can fix the error (a mistake in the setup or the data), so the task should
    fail at once."""
    if isinstance(error, SetupError | RejectRatioExceeded | AuthenticationError):
        return True
    if isinstance(error, TransientError | RateLimitedError | CircuitOpenError):
        return False  # the API is down or busy: an outage
    if isinstance(error, ChartMogulError):
        # another 4xx: a request mogulflow made wrong, which the same run would make again
        return error.status is not None and 400 <= error.status < 500 and error.status != 429
    name = type(error).__name__
    if name in MISSING_CONNECTION_ERRORS or name in PERMANENT_DUCKDB_ERRORS:
        return True
    sqlstate = getattr(error, "pgcode", None) or getattr(getattr(error, "diag", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES:
        return True
    return isinstance(error, FileNotFoundError)  # an SQL template that is not where it should be


def describe(error: BaseException) -> str:
    """The error in one line: what is wrong and, for mistakes, what to do."""
    text = " ".join((str(error) or type(error).__name__).split())
    name = type(error).__name__
    if isinstance(error, AuthenticationError):
        text = (
            f"ChartMogul refused the API key ({text}): put a valid API key in the password of the "
            "chartmogul connection (ChartMogul → Profile → API keys), then run again"
        )
    elif isinstance(error, TransientError) and error.status is None:
        text = f"{text}: ChartMogul cannot be reached; check the connection's host and the network"
    elif name in MISSING_CONNECTION_ERRORS:
        text = (
            f"{text}: create the connection (airflow connections add, the UI, or an AIRFLOW_CONN_<ID> "
            "environment variable; see the README's Configuration)"
        )
    elif name in PERMANENT_DUCKDB_ERRORS or getattr(error, "pgcode", None):
        text = f"the warehouse refused mogulflow's SQL ({name}: {text}); run `mogulflow preflight`"
    elif not isinstance(error, SetupError | ChartMogulError | RejectRatioExceeded | Outage):
        text = f"{name}: {text}"
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
