"""The ChartMogul error family, and one parser for every error body the API is known to send.

Every exception here carries `status`, `field`, `message`, `method` and `path` (the URL path only:
never a query string, a payload or a credential), so `str(exc)` is always safe to log.

Error body families (see ../shared/chartmogul-api.md §5):

- A `{"errors": {"external_id": "...", "name": "..."}}`
- B `{"code": 404, "message": "...", "param": "email"}`
- C `{"error": "Data source not found"}`
- D `{"error": "...", "error_details": [{"param", "code", "message"}]}`
- E `{"name": ["Name can't be blank"], "error_details": [...]}` (Rails style)
- F `{"invoices": [{"external_id": "...", "errors": {"external_id": "..."}}]}` (per invoice)

and bodies that are not JSON at all (an HTML error page from a proxy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Fragments of the messages the API uses when an object with that external id is already there.
ALREADY_EXISTS_MARKERS: tuple[str, ...] = ("already exists", "already been taken")

#: Longest message kept from a non-JSON body; an HTML page is noise after the first line.
_MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class FieldError:
    """One field-level complaint: which field (None when the API names none) and what it said."""

    field: str | None
    message: str


@dataclass(frozen=True)
class InvoiceError:
    """The errors the API reported for one invoice of an import batch (family F)."""

    external_id: str | None
    index: int
    errors: tuple[FieldError, ...]

    @property
    def already_exists(self) -> bool:
        """True when every complaint only says the invoice (or its items) is already there."""
        return bool(self.errors) and all(is_already_exists_message(e.message) for e in self.errors)

    @property
    def message(self) -> str:
        """The complaints as one line, `field: message; ...`."""
        return "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in self.errors)


@dataclass(frozen=True)
class ParsedErrorBody:
    """What an error body said, whichever family it used."""

    message: str
    field: str | None = None
    field_errors: tuple[FieldError, ...] = ()
    invoice_errors: tuple[InvoiceError, ...] = ()


class ChartMogulError(Exception):
    """Base of every error the ChartMogul transport raises; safe to log (no key, no payload)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        field: str | None = None,
        method: str | None = None,
        path: str | None = None,
        field_errors: tuple[FieldError, ...] = (),
        invoice_errors: tuple[InvoiceError, ...] = (),
    ) -> None:
        self.message = message
        self.status = status
        self.field = field
        self.method = method
        self.path = path
        self.field_errors = field_errors
        self.invoice_errors = invoice_errors
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = " ".join(part for part in (self.method, self.path) if part)
        status = f"HTTP {self.status}" if self.status is not None else type(self).__name__
        field = f" (field {self.field!r})" if self.field else ""
        prefix = f"{where} → {status}" if where else status
        return f"{prefix}: {self.message}{field}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()!r})"

    @property
    def already_exists(self) -> bool:
        """True when the API refused a create because that external id is already there."""
        messages = [self.message, *(e.message for e in self.field_errors)]
        return self.status == 422 and any(is_already_exists_message(m) for m in messages)


class ValidationError(ChartMogulError):
    """400 or 422: the API understood the request and refused its content; never retried."""


class NotFoundError(ChartMogulError):
    """404: the object (or, for a misused path, the endpoint) does not exist."""


class AuthenticationError(ChartMogulError):
    """401 or 403: the API key is wrong, revoked, or the account's trial has expired."""


class RateLimitedError(ChartMogulError):
    """429 after every retry: the account's rate or compute budget stayed exhausted."""


class TransientError(ChartMogulError):
    """A 5xx, a timeout or a dropped connection that outlasted the retries.

    `maybe_applied` says whether the server may have acted on the request before it failed
    (a read timeout or a 5xx after the body was sent), which matters for creates.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False, **kwargs: Any) -> None:
        self.maybe_applied = maybe_applied
        super().__init__(message, **kwargs)


class CircuitOpenError(ChartMogulError):
    """The API kept refusing (several requests in a row exhausted their retries): stop the batch.

    Deliberately not a `TransientError`, so per-row handlers that tolerate transient failures
    do not swallow it and fail thousands of rows one by one.
    """


class BulkImportUnsupportedError(ChartMogulError):
    """The server has no bulk JSON import endpoint (404/405): fall back to per-object writes."""


class BulkImportFailedError(ChartMogulError):
    """A bulk JSON import ended in a failed state, or did not complete within the allowed time."""


def is_already_exists_message(message: str) -> bool:
    """True when an API message says an object with that identifier is already there."""
    lowered = message.lower()
    return any(marker in lowered for marker in ALREADY_EXISTS_MARKERS)


def parse_error_body(content: bytes | str, *, status: int, secret: str | None = None) -> ParsedErrorBody:
    """Read an error response body of any known family (or none) into a `ParsedErrorBody`.

    `secret` (the API key) is scrubbed from every message, in case a server ever echoes it.
    """
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    parsed = _parse_json_body(body) if body is not None else None
    if parsed is None:
        parsed = ParsedErrorBody(message=_summarise_text(text, status))
    return _scrub(parsed, secret) if secret else parsed


def error_for_status(
    status: int,
    parsed: ParsedErrorBody,
    *,
    method: str,
    path: str,
    maybe_applied: bool = False,
) -> ChartMogulError:
    """Build the exception of the right class for an HTTP error status."""
    kwargs: dict[str, Any] = {
        "status": status,
        "field": parsed.field,
        "method": method,
        "path": path,
        "field_errors": parsed.field_errors,
        "invoice_errors": parsed.invoice_errors,
    }
    if status in (400, 422):
        return ValidationError(parsed.message, **kwargs)
    if status in (401, 403):
        return AuthenticationError(parsed.message, **kwargs)
    if status == 404:
        return NotFoundError(parsed.message, **kwargs)
    if status == 429:
        return RateLimitedError(parsed.message, **kwargs)
    if status >= 500:
        return TransientError(parsed.message, maybe_applied=maybe_applied, **kwargs)
    return ChartMogulError(parsed.message, **kwargs)


def _parse_json_body(body: Any) -> ParsedErrorBody | None:
    if isinstance(body, str) and body.strip():
        return ParsedErrorBody(message=body.strip())
    if not isinstance(body, Mapping):
        return None
    # F before the others: its top-level key is a list of invoices, not a message.
    invoices = body.get("invoices")
    if isinstance(invoices, list) and any(isinstance(i, Mapping) and i.get("errors") for i in invoices):
        return _parse_invoice_errors(invoices)
    # A: {"errors": {field: message}} (also tolerate a list of messages or a plain string).
    errors = body.get("errors")
    if isinstance(errors, Mapping) and errors:
        return _from_field_errors(_field_errors_from_mapping(errors))
    if isinstance(errors, list) and errors:
        return _from_field_errors(tuple(_field_error_from_item(item) for item in errors))
    if isinstance(errors, str) and errors.strip():
        return ParsedErrorBody(message=errors.strip())
    # B: {"code", "message", "param"}.
    if isinstance(body.get("message"), str) and body["message"].strip():
        param = body.get("param")
        field = param if isinstance(param, str) and param else None
        return ParsedErrorBody(
            message=body["message"].strip(),
            field=field,
            field_errors=(FieldError(field, body["message"].strip()),),
        )
    details = body.get("error_details")
    detail_errors = (
        tuple(_field_error_from_item(item) for item in details) if isinstance(details, list) else ()
    )
    # C and D: {"error": "...", "error_details"?: [...]}.
    if isinstance(body.get("error"), str) and body["error"].strip():
        field = next((e.field for e in detail_errors if e.field), None)
        return ParsedErrorBody(message=body["error"].strip(), field=field, field_errors=detail_errors)
    # E: Rails style {field: [messages], "error_details"?: [...]}.
    rails = {
        key: value
        for key, value in body.items()
        if key != "error_details" and isinstance(value, list) and all(isinstance(v, str) for v in value)
    }
    if rails:
        return _from_field_errors(_field_errors_from_mapping(rails))
    if detail_errors:
        return _from_field_errors(detail_errors)
    # Unknown shape, e.g. a framework default like {"detail": "Not Found"}.
    detail = body.get("detail")
    if isinstance(detail, str) and detail.strip():
        return ParsedErrorBody(message=detail.strip())
    return None


def _parse_invoice_errors(invoices: list[Any]) -> ParsedErrorBody:
    invoice_errors: list[InvoiceError] = []
    for index, item in enumerate(invoices):
        if not isinstance(item, Mapping):
            continue
        raw = item.get("errors")
        if isinstance(raw, Mapping):
            field_errors = _field_errors_from_mapping(raw)
        elif isinstance(raw, list):
            field_errors = tuple(_field_error_from_item(e) for e in raw)
        elif isinstance(raw, str) and raw:
            field_errors = (FieldError(None, raw),)
        else:
            field_errors = ()
        external_id = item.get("external_id")
        invoice_errors.append(
            InvoiceError(
                external_id=str(external_id) if external_id is not None else None,
                index=index,
                errors=field_errors,
            )
        )
    failing = [e for e in invoice_errors if e.errors]
    summary = "; ".join(f"invoice {e.external_id or '#' + str(e.index)}: {e.message}" for e in failing[:3])
    if len(failing) > 3:
        summary += f"; and {len(failing) - 3} more invoices"
    return ParsedErrorBody(
        message=summary or "invoice import refused",
        field=failing[0].errors[0].field if failing else None,
        field_errors=tuple(fe for e in failing for fe in e.errors),
        invoice_errors=tuple(invoice_errors),
    )


def _field_errors_from_mapping(errors: Mapping[str, Any]) -> tuple[FieldError, ...]:
    found: list[FieldError] = []
    for field, value in errors.items():
        messages = value if isinstance(value, list) else [value]
        found.extend(FieldError(str(field), _as_text(m)) for m in messages if m is not None)
    return tuple(found)


def _field_error_from_item(item: Any) -> FieldError:
    if isinstance(item, Mapping):
        field = item.get("param") or item.get("field")
        message = item.get("message") or item.get("code") or json.dumps(item, sort_keys=True)
        return FieldError(str(field) if field else None, _as_text(message))
    return FieldError(None, _as_text(item))


def _from_field_errors(field_errors: tuple[FieldError, ...]) -> ParsedErrorBody:
    message = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in field_errors)
    field = field_errors[0].field if field_errors else None
    return ParsedErrorBody(message=message, field=field, field_errors=field_errors)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _summarise_text(text: str, status: int) -> str:
    # An HTML page: keep its <title> (or first words) so the log says something human.
    title = re.search(r"<title[^>]*>(.*?)</title>", text, flags=re.IGNORECASE | re.DOTALL)
    snippet = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
    snippet = " ".join(snippet.split())[:_MAX_MESSAGE_CHARS]
    return snippet or f"HTTP {status} with an empty body"


def _scrub(parsed: ParsedErrorBody, secret: str) -> ParsedErrorBody:
    def clean(text: str) -> str:
        return text.replace(secret, "***")

    return ParsedErrorBody(
        message=clean(parsed.message),
        field=parsed.field,
        field_errors=tuple(FieldError(e.field, clean(e.message)) for e in parsed.field_errors),
        invoice_errors=tuple(
            InvoiceError(
                external_id=i.external_id,
                index=i.index,
                errors=tuple(FieldError(e.field, clean(e.message)) for e in i.errors),
            )
            for i in parsed.invoice_errors
        ),
    )
