"""Reading and checking request bodies: the validation rules of customers, plans, invoices.

Pure functions: they take a body and what they need to know (strictness, now, a plan lookup) and
return values or error messages; uniqueness against stored records is the state's job.
Messages quote the recordings where one exists; the rest are the sandbox's own wording
(``docs/sandbox.md`` says which).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

import pycountry
from email_validator import EmailNotValidError, validate_email

from mogulflow_sandbox.api_errors import ApiError, coded_error, field_errors
from mogulflow_sandbox.attributes import read_custom_list
from mogulflow_sandbox.records import LINE_ITEM_ECHOED_DEFAULTS, LINE_ITEM_TYPES, PlanRecord
from mogulflow_sandbox.settings import Strictness
from mogulflow_sandbox.timestamps import TimestampError, parse_timestamp

CUSTOMER_TEXT_FIELDS = ("name", "email", "company", "country", "state", "city", "zip", "owner", "website_url")
CUSTOMER_TIMESTAMP_FIELDS = ("lead_created_at", "free_trial_started_at")
INTERVAL_UNITS = ("day", "month", "year")
TRANSACTION_TYPES = ("payment", "refund")
TRANSACTION_RESULTS = ("successful", "failed")

CUSTOMER_EXTERNAL_ID_REQUIRED = "A unique external ID is required for each customer."
CUSTOMER_NAME_REQUIRED = "A name is required for each customer."
CUSTOMER_DATA_SOURCE_REQUIRED = "A valid data source UUID is required for each customer."
CUSTOMER_EXTERNAL_ID_TAKEN = "The external ID for this customer already exists in our system."
INVALID_EMAIL = "The value provided does not appear to be a valid email address."
PLAN_NAME_REQUIRED = "A unique name is required for each plan."
PLAN_INTERVAL_COUNT_INVALID = "is not a number"
PLAN_INTERVAL_UNIT_INVALID = "Only 'day', 'month' or 'year' are valid values for interval_unit."
PLAN_DATA_SOURCE_REQUIRED = "A valid data source UUID is required for each plan."
PLAN_EXTERNAL_ID_TAKEN = "A plan with this identifier already exists in our system."
INVOICE_EXTERNAL_ID_TAKEN = "The external ID for this invoice already exists in our system."
LINE_ITEM_EXTERNAL_ID_TAKEN = "The external ID for this line item already exists in our system."
TRANSACTION_EXTERNAL_ID_TAKEN = "has already been taken"
CURRENCY_INVALID = "Currency is invalid"
DATE_IN_FUTURE = "Date is in the future"
BLANK = "can't be blank"


def is_blank(value: object) -> bool:
    """A missing value: None, or a text that is empty or only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())


# -- customers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerChanges:
    """The profile fields one create/update body sets (only those present in the body)."""

    values: dict[str, Any] = field(default_factory=dict)
    tags: list[str] | None = None
    custom: dict[str, tuple[str | None, Any]] | None = None


def missing_customer_fields(
    body: dict[str, Any], data_source_known: bool, strictness: Strictness
) -> ApiError | None:
    """Family A 422 listing every missing required create field (2016 recording), or None."""
    errors: dict[str, str] = {}
    if is_blank(body.get("external_id")):
        errors["external_id"] = CUSTOMER_EXTERNAL_ID_REQUIRED
    if strictness.require_customer_name and is_blank(body.get("name")):
        errors["name"] = CUSTOMER_NAME_REQUIRED
    if not data_source_known:
        errors["data_source_uuid"] = CUSTOMER_DATA_SOURCE_REQUIRED
    return field_errors(errors) if errors else None


def read_customer_changes(body: dict[str, Any], strictness: Strictness, now: datetime) -> CustomerChanges:
    """The profile fields a body sets, parsed and checked one by one; a bad value raises a family B 422.

    ``null`` clears a field. Checks: email syntax (recorded), and [UNVERIFIED] per `strictness`:
    ISO 3166-1 alpha-2 country, timestamps parseable and not in the future.
    """
    values: dict[str, Any] = {}
    for name in CUSTOMER_TEXT_FIELDS:
        if name in body:
            value = body[name]
            if value is not None and not isinstance(value, str):
                raise coded_error(422, f'The value of "{name}" must be a string.', name)
            values[name] = value
    email = values.get("email")
    if email:
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            raise coded_error(422, INVALID_EMAIL, "email") from None
    country = values.get("country")
    if country and strictness.check_country_code and pycountry.countries.get(alpha_2=country.upper()) is None:
        raise coded_error(422, f'"{country}" is not a valid ISO 3166-1 alpha-2 country code.', "country")
    for name in CUSTOMER_TIMESTAMP_FIELDS:
        if name in body:
            values[name] = _read_optional_timestamp(body[name], name, strictness, now)
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise coded_error(422, 'The value of "attributes" must be an object.', "attributes")
    return CustomerChanges(values=values, tags=_read_tags(attributes), custom=_read_custom(attributes))


def _read_optional_timestamp(
    value: object, name: str, strictness: Strictness, now: datetime
) -> datetime | None:
    if is_blank(value):
        return None
    try:
        moment = parse_timestamp(value)
    except TimestampError:
        raise coded_error(422, f'The value of "{name}" is not a valid timestamp.', name) from None
    if strictness.check_future_timestamps and moment > now + strictness.clock_skew:
        raise coded_error(422, f'The value of "{name}" lies in the future.', name)
    return moment


def _read_tags(attributes: dict[str, Any]) -> list[str] | None:
    tags = attributes.get("tags")
    return [str(tag) for tag in tags] if isinstance(tags, list) else None


def _read_custom(attributes: dict[str, Any]) -> dict[str, tuple[str | None, Any]] | None:
    """Custom attributes: a typed array on create (checked as ``POST …/attributes/custom`` checks it),
    an object map on update (its types are the customer's: `None` here)."""
    custom = attributes.get("custom")
    if isinstance(custom, list):
        return dict(read_custom_list(custom))
    if isinstance(custom, dict):
        return {
            key: (None, value.get("value") if isinstance(value, dict) else value)
            for key, value in custom.items()
        }
    return None


def apply_lead_default_rule(
    lead_created_at: datetime | None, free_trial_started_at: datetime | None
) -> datetime | None:
    """ChartMogul's rule: a trial start without a lead date makes the trial start the lead date."""
    if lead_created_at is None and free_trial_started_at is not None:
        return free_trial_started_at
    return lead_created_at


def check_lead_before_trial(
    lead_created_at: datetime | None, free_trial_started_at: datetime | None, strictness: Strictness
) -> None:
    """[UNVERIFIED] family B 422 when the lead date lies after the trial start (if the check is on)."""
    if (
        strictness.check_lead_before_trial
        and lead_created_at is not None
        and free_trial_started_at is not None
        and lead_created_at > free_trial_started_at
    ):
        raise coded_error(422, "lead_created_at must not be after free_trial_started_at.", "lead_created_at")


# -- plans -----------------------------------------------------------------------------------------


def plan_field_errors(body: dict[str, Any], data_source_known: bool, partial: bool = False) -> dict[str, str]:
    """Family A messages for a plan body (2016 recording); ``partial`` checks only the fields present."""
    errors: dict[str, str] = {}
    if (not partial or "name" in body) and is_blank(body.get("name")):
        errors["name"] = PLAN_NAME_REQUIRED
    if not partial or "interval_count" in body:
        count = body.get("interval_count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            errors["interval_count"] = PLAN_INTERVAL_COUNT_INVALID
    if (not partial or "interval_unit" in body) and body.get("interval_unit") not in INTERVAL_UNITS:
        errors["interval_unit"] = PLAN_INTERVAL_UNIT_INVALID
    if not partial and not data_source_known:
        errors["data_source_uuid"] = PLAN_DATA_SOURCE_REQUIRED
    return errors


# -- invoices --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineItemDraft:
    """A checked line item, ready to be stored."""

    type: str
    external_id: str | None
    amount_in_cents: int
    quantity: int
    plan_uuid: str | None
    subscription_external_id: str | None
    service_period_start: datetime | None
    service_period_end: datetime | None
    echoed: dict[str, Any]


@dataclass(frozen=True)
class TransactionDraft:
    """A checked transaction, ready to be stored."""

    type: str
    external_id: str | None
    date: datetime
    result: str
    amount_in_cents: int | None


@dataclass(frozen=True)
class InvoiceDraft:
    """A checked invoice; ``errors`` is empty when it may be stored."""

    external_id: str | None
    errors: dict[str, str]
    date: datetime | None = None
    due_date: datetime | None = None
    currency: str = ""
    data_source_uuid: str | None = None
    customer_external_id: str | None = None
    line_items: tuple[LineItemDraft, ...] = ()
    transactions: tuple[TransactionDraft, ...] = ()


FindPlan = Callable[[str], PlanRecord | None]


def read_invoice(
    raw: object, data_source_uuid: str, find_plan: FindPlan, strictness: Strictness, now: datetime
) -> InvoiceDraft:
    """Check one invoice of an import body; errors are keyed like the API's (``line_items.plan_uuid``).

    ``data_source_uuid`` is the one the invoice belongs to (its own, else its customer's), the one
    its plans must come from. Duplicates are not checked here.
    """
    if not isinstance(raw, dict):
        return InvoiceDraft(external_id=None, errors={"invoice": "must be an object"})
    errors: dict[str, str] = {}
    external_id = raw.get("external_id")
    if is_blank(external_id):
        errors["external_id"] = BLANK
    date = _read_timestamp_into(errors, "date", raw.get("date"), required=True)
    if date is not None and strictness.check_future_timestamps and date > now + strictness.clock_skew:
        errors["date"] = DATE_IN_FUTURE
    due_date = _read_timestamp_into(errors, "due_date", raw.get("due_date"), required=False)
    currency = raw.get("currency")
    if not isinstance(currency, str) or pycountry.currencies.get(alpha_3=currency.upper()) is None:
        errors["currency"] = CURRENCY_INVALID
    line_items = []
    raw_line_items = raw.get("line_items") or []
    if not isinstance(raw_line_items, list):
        errors["line_items"] = "must be an array"
        raw_line_items = []
    for raw_line_item in raw_line_items:
        line_item_errors, line_item = read_line_item(raw_line_item, data_source_uuid, find_plan)
        for key, message in line_item_errors.items():
            errors.setdefault(f"line_items.{key}", message)
        if line_item is not None:
            line_items.append(line_item)
    transactions = []
    for raw_transaction in raw.get("transactions") or []:
        transaction_errors, transaction = read_transaction(raw_transaction)
        for key, message in transaction_errors.items():
            errors.setdefault(f"transactions.{key}", message)
        if transaction is not None:
            transactions.append(transaction)
    return InvoiceDraft(
        external_id=external_id if isinstance(external_id, str) else None,
        errors=errors,
        date=date,
        due_date=due_date,
        currency=currency.upper() if isinstance(currency, str) else "",
        data_source_uuid=raw.get("data_source_uuid"),
        customer_external_id=raw.get("customer_external_id"),
        line_items=tuple(line_items),
        transactions=tuple(transactions),
    )


def read_line_item(
    raw: object, data_source_uuid: str, find_plan: FindPlan
) -> tuple[dict[str, str], LineItemDraft | None]:
    """Check one line item: type, plan of the same data source, subscription id, period, amount, quantity."""
    if not isinstance(raw, dict):
        return {"line_item": "must be an object"}, None
    errors: dict[str, str] = {}
    item_type = raw.get("type")
    if item_type not in LINE_ITEM_TYPES:
        errors["type"] = "Only 'subscription', 'one_time' or 'trial' are valid values for type."
    amount = raw.get("amount_in_cents")
    if not _is_int(amount) or amount < 0:
        errors["amount_in_cents"] = "must be an integer greater than or equal to 0"
    quantity = raw.get("quantity", 1)
    if not _is_int(quantity) or quantity < 1:
        errors["quantity"] = "must be an integer greater than or equal to 1"
    plan_uuid = raw.get("plan_uuid")
    start = end = None
    if item_type in ("subscription", "trial"):
        if is_blank(plan_uuid):
            errors["plan_uuid"] = f"A plan UUID is required for each {item_type} line item."
        else:
            plan = find_plan(str(plan_uuid))
            if plan is None or plan.data_source_uuid != data_source_uuid:
                errors["plan_uuid"] = "Plan not found in the invoice's data source."
        if is_blank(raw.get("subscription_external_id")):
            errors["subscription_external_id"] = BLANK
        start = _read_timestamp_into(
            errors, "service_period_start", raw.get("service_period_start"), required=True
        )
        end = _read_timestamp_into(errors, "service_period_end", raw.get("service_period_end"), required=True)
        if start is not None and end is not None and not start < end:
            errors["service_period_end"] = "must be after service_period_start"
    if errors:
        return errors, None
    assert isinstance(item_type, str) and _is_int(amount)  # no errors: both were checked above
    echoed = {key: raw[key] for key in LINE_ITEM_ECHOED_DEFAULTS if key in raw}
    return errors, LineItemDraft(
        type=item_type,
        external_id=raw.get("external_id"),
        amount_in_cents=amount,
        quantity=quantity,
        plan_uuid=plan_uuid if item_type != "one_time" else raw.get("plan_uuid"),
        subscription_external_id=raw.get("subscription_external_id") if item_type != "one_time" else None,
        service_period_start=start,
        service_period_end=end,
        echoed=echoed,
    )


def read_transaction(raw: object) -> tuple[dict[str, str], TransactionDraft | None]:
    """Check one transaction: type payment/refund, result successful/failed, a date."""
    if not isinstance(raw, dict):
        return {"transaction": "must be an object"}, None
    errors: dict[str, str] = {}
    if raw.get("type") not in TRANSACTION_TYPES:
        errors["type"] = "Only 'payment' or 'refund' are valid values for type."
    if raw.get("result") not in TRANSACTION_RESULTS:
        errors["result"] = "Only 'successful' or 'failed' are valid values for result."
    date = _read_timestamp_into(errors, "date", raw.get("date"), required=True)
    amount = raw.get("amount_in_cents")
    if amount is not None and (not _is_int(amount) or amount < 0):
        errors["amount_in_cents"] = "must be an integer greater than or equal to 0"
    if errors or date is None:
        return errors, None
    return errors, TransactionDraft(
        type=raw["type"],
        external_id=raw.get("external_id"),
        date=date,
        result=raw["result"],
        amount_in_cents=amount,
    )


def _read_timestamp_into(errors: dict[str, str], name: str, value: object, required: bool) -> datetime | None:
    if is_blank(value):
        if required:
            errors[name] = BLANK
        return None
    try:
        return parse_timestamp(value)
    except TimestampError:
        errors[name] = "is not a valid timestamp"
        return None


def _is_int(value: object) -> TypeGuard[int]:
    """An integer JSON number (``true``/``false`` are ints to Python, not to the API)."""
    return isinstance(value, int) and not isinstance(value, bool)
