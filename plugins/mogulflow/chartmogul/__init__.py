"""ChartMogul transport: paced, retrying, idempotent HTTP clients. No Airflow in here."""

from mogulflow.chartmogul.client import AsyncChartMogulClient, ChartMogulClient
from mogulflow.chartmogul.errors import (
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
from mogulflow.chartmogul.flows import WriteOutcome
from mogulflow.chartmogul.invoices import InvoiceImportResult
from mogulflow.chartmogul.pacing import RateLimiter
from mogulflow.chartmogul.retry import DEFAULT_RETRY_STATUS, CircuitBreaker, RetryPolicy
from mogulflow.chartmogul.settings import DEFAULT_BASE_URL, ClientSettings

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
