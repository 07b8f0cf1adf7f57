"""The error answers ChartMogul gives, one constructor per envelope family seen in recordings.

Families (see ``shared/chartmogul-api.md`` §5): A ``{"errors": {field: message}}``,
B ``{"code", "message", "param"}``, C ``{"error": message}``, D ``{"error", "error_details": [...]}``,
F ``{"invoices": [{"external_id", "errors"}]}``. Handlers raise `ApiError`; the app renders it.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answer: status code plus the exact JSON body to send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def field_errors(errors: dict[str, str], status: int = 422) -> ApiError:
    """Family A: ``{"errors": {field: message}}``, what creates answer for missing fields and duplicates."""
    return ApiError(status, {"errors": dict(errors)})


def coded_error(status: int, message: str, param: str | None = None) -> ApiError:
    """Family B: ``{"code", "message", "param"}``, used for 400/401/404 and single-field 422s."""
    return ApiError(status, {"code": status, "message": message, "param": param})


def missing_parameter(param: str) -> ApiError:
    """400 for a required parameter that is absent, as the API has answered since 2023."""
    return coded_error(400, f'Parameter "{param}" is missing', param)


def invalid_parameter(param: str) -> ApiError:
    """400 for a query or body parameter of the wrong shape."""
    return coded_error(400, f'Parameter "{param}" is invalid', param)


def bare_error(status: int, message: str) -> ApiError:
    """Family C: ``{"error": message}``, e.g. 404 "Data source not found"."""
    return ApiError(status, {"error": message})


def detailed_error(status: int, message: str, param: str) -> ApiError:
    """Family D: ``{"error", "error_details": [{"param", "code": "invalid", "message"}]}``."""
    return ApiError(
        status,
        {"error": message, "error_details": [{"param": param, "code": "invalid", "message": message}]},
    )


UNAUTHORIZED = coded_error(401, "No valid API key provided")
DATA_SOURCE_NOT_FOUND_MESSAGE = "Data source not found"
PLAN_NOT_FOUND_MESSAGE = "Plan not found"
INVOICE_NOT_FOUND_MESSAGE = "Invoice not found"


def customer_not_found(customer_uuid: str) -> ApiError:
    """404 for an unknown customer uuid; the recorded message quotes the uuid without its ``cus_`` prefix."""
    bare_uuid = customer_uuid.removeprefix("cus_")
    return coded_error(404, f'Customer "{bare_uuid}" does not exist', "customer_id")
