"""ChartMogul transport: paced, retrying, idempotent HTTP clients. No Airflow in here."""

from mogulflow.api.client import AsyncChartMogulClient, ChartMogulClient
from mogulflow.api.errors import (
    AuthenticationError,
    BulkImportFailedError,
    BulkImportUnsupportedError,
    ChartMogulError,
    CircuitOpenError,
    NotFoundError,
    RateLimitedError,
    TransientError,
    ValidationError,
)
from mogulflow.api.flows import WriteOutcome
from mogulflow.api.invoices import InvoiceImportResult
from mogulflow.api.pacing import RateLimiter
from mogulflow.api.retry import DEFAULT_RETRY_STATUS, CircuitBreaker, RetryPolicy
from mogulflow.api.settings import DEFAULT_BASE_URL, ClientSettings

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RETRY_STATUS",
    "AsyncChartMogulClient",
    "AuthenticationError",
    "BulkImportFailedError",
    "BulkImportUnsupportedError",
    "ChartMogulClient",
    "ChartMogulError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ClientSettings",
    "InvoiceImportResult",
    "NotFoundError",
    "RateLimitedError",
    "RateLimiter",
    "RetryPolicy",
    "TransientError",
    "ValidationError",
    "WriteOutcome",
]
