"""ChartMogul transport: paced, retrying, idempotent HTTP clients. No Airflow in here."""

from mogulflow.api.client import (
    DEFAULT_BASE_URL,
    AsyncChartMogulClient,
    ChartMogulClient,
    ClientSettings,
    InvoiceImportResult,
    WriteOutcome,
)
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
from mogulflow.api.pacing import RateLimiter
from mogulflow.api.retry import DEFAULT_RETRY_STATUS, CircuitBreaker, RetryPolicy

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
