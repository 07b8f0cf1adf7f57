"""The validation rules of each entity (the contract's "Validation" section), as vectorised tests.

`mogulflow.validate.validator` runs them: with pandera, over one chunk of an extract at a time. Every rule
here is row-local (the cross-entity ones given the `KnownIds` they close over).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import email_validator
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pycountry

from mogulflow.extract.source_tables import (
    CONVERSIONS,
    INTERVAL_UNITS,
    LEAD_ATTRIBUTES,
    LEAD_TAGS,
    LEADS,
    PLANS,
    TRIALS,
    SourceTable,
)
from mogulflow.values.id_arrays import KnownIds
from mogulflow.values.rejected_rows import RuleKind

CLOCK_SKEW = timedelta(minutes=5)
COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)
CURRENCY_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)

PRESENT = "must be present"
IN_FUTURE = "must not be in the future"


@dataclass(frozen=True)
class Rule:
    """One validation rule: a vectorised test and how its failure reads in a reject reason.

    `test` gets the column (or, for a `row_level` rule, the whole frame) and returns a boolean
    Series, True where the row passes. Column tests never see missing values (pandera drops them
    first); row-level tests must let rows with missing values pass, `PRESENT` reports those.
    """

    field: str
    words: str
    test: Callable[[pd.Series | pd.DataFrame], pd.Series]
    row_level: bool = False
    kind: RuleKind = RuleKind.INVALID

    @property
    def name(self) -> str:
        return f"{self.field}: {self.words}"

    def to_check(self) -> pa.Check:
        return pa.Check(self.test, name=self.name, error=self.name)


def lead_rules(now: datetime) -> list[Rule]:
    """The rules of `leads` rows (see the contract's rules for leads)."""
    return [
        Rule("email", "must be a valid email address", is_valid_email),
        Rule("country", "must be an ISO 3166-1 alpha-2 country code", _is_in(COUNTRY_CODES)),
        Rule(
            "lead_created_at",
            "must not be after free_trial_started_at",
            _not_after("lead_created_at", "free_trial_started_at"),
            row_level=True,
        ),
        *_not_in_future(LEADS, now),
    ]


def plan_rules(now: datetime) -> list[Rule]:
    """The rules of `plans` rows (see the contract's rules for plans)."""
    return [
        Rule("interval_count", "must be at least 1", lambda s: s >= 1),
        Rule("interval_unit", f"must be one of {', '.join(INTERVAL_UNITS)}", _is_in(INTERVAL_UNITS)),
        *_not_in_future(PLANS, now),
    ]


def trial_rules(
    now: datetime, *, known_lead_ids: Collection[str], known_plan_ids: Collection[str]
) -> list[Rule]:
    """The rules of `trials` rows; `known_*_ids`: valid in this run together with those synced before."""
    return [
        Rule(
            "lead_id",
            "must name a lead that is valid or was synced before",
            _is_in(known_lead_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        Rule(
            "plan_id",
            "must name a plan that is valid or was synced before",
            _is_in(known_plan_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        Rule("ends_at", "must be after started_at", _after("ends_at", "started_at"), row_level=True),
        Rule("amount_in_cents", "must not be negative", lambda s: s >= 0),
        Rule("currency", "must be an ISO 4217 currency code", _is_in(CURRENCY_CODES)),
        Rule("quantity", "must be at least 1", lambda s: s >= 1),
        *_not_in_future(TRIALS, now),
    ]


def conversion_rules(now: datetime, *, known_lead_ids: Collection[str]) -> list[Rule]:
    """The rules of `conversions` rows; `known_lead_ids`: leads valid in this run or synced before."""
    return [
        Rule(
            "lead_id",
            "must name a lead mogulflow has synced",
            _is_in(known_lead_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        *_not_in_future(CONVERSIONS, now),
    ]


#: The types of a custom attribute, as ChartMogul spells them (docs/api-notes.md); any case in the warehouse.
ATTRIBUTE_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
STRING_MAX_CHARS = 255  # ChartMogul's limit on a String attribute
ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_]+")
_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEAN = ("true", "false")
VALUE_OF_TYPE = (
    "must be of its type (Integer: a whole number; Decimal: a number; Timestamp: ISO-8601, not in the "
    "future; Boolean: true or false; String: at most 255 characters)"
)


def attribute_rules(now: datetime, *, known_lead_ids: Collection[str]) -> list[Rule]:
    """The rules of `lead_attributes` rows (see the contract's "Lead attributes and tags")."""
    return [
        Rule(
            "lead_id",
            "must name a lead that is valid or was synced before",
            _is_in(known_lead_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        Rule(
            "key", "must be made of letters, digits and underscores", lambda s: s.str.fullmatch(ATTRIBUTE_KEY)
        ),
        Rule("type", f"must be one of {', '.join(ATTRIBUTE_TYPES)} (any case)", _is_attribute_type),
        Rule("type", "must be present when value is", _type_with_value, row_level=True),
        Rule("value", VALUE_OF_TYPE, _value_is_of_type(now), row_level=True),
        *_not_in_future(LEAD_ATTRIBUTES, now),
    ]


def tag_rules(now: datetime, *, known_lead_ids: Collection[str]) -> list[Rule]:
    """The rules of `lead_tags` rows (an empty tag fails `PRESENT`)."""
    return [
        Rule(
            "lead_id",
            "must name a lead that is valid or was synced before",
            _is_in(known_lead_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        *_not_in_future(LEAD_TAGS, now),
    ]


@functools.lru_cache(maxsize=256)
def canonical_type(kind: str) -> str | None:
    """The attribute type as ChartMogul spells it (`integer` → `Integer`), or None if it is none."""
    return _TYPES_BY_LOWER.get(kind.strip().lower())


_TYPES_BY_LOWER = {kind.lower(): kind for kind in ATTRIBUTE_TYPES}


def _is_attribute_type(kinds: pd.Series) -> pd.Series:
    return kinds.str.lower().isin(list(_TYPES_BY_LOWER))


def _type_with_value(frame: pd.DataFrame) -> pd.Series:
    """Row-level: a value needs its type (a removal, with a null value, needs none)."""
    return frame["value"].isna() | frame["type"].notna()


def _value_is_of_type(now: datetime) -> Callable[[pd.DataFrame], pd.Series]:
    """Row-level: each value of its row's type (Integer: whole number; Decimal: number; Timestamp:
    ISO-8601, not in the future; Boolean: true/false; String: at most 255 characters). A missing value
    (it removes the key) or a missing or unknown type passes: `PRESENT` and the type rule report those."""
    latest = _utc(now) + CLOCK_SKEW

    def test(frame: pd.DataFrame) -> pd.Series:
        kinds = frame["type"].str.lower()
        values = frame["value"]
        ok = pd.Series(True, index=frame.index)
        checks = {
            "string": lambda v: v.str.len() <= STRING_MAX_CHARS,
            "integer": lambda v: v.str.fullmatch(_INTEGER),
            "decimal": _is_decimal,
            "boolean": lambda v: v.str.lower().isin(_BOOLEAN),
            "timestamp": lambda v: _is_past_timestamp(v, latest),
        }
        for kind, check in checks.items():
            rows = (kinds == kind) & values.notna()
            if rows.any():
                ok[rows] = check(values[rows]).fillna(False).astype(bool)
        return ok

    return test


def _is_decimal(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna() & np.isfinite(numbers.astype(float))


def _is_past_timestamp(values: pd.Series, latest: pd.Timestamp) -> pd.Series:
    moments = values.map(parse_attribute_timestamp)
    return moments.map(lambda moment: moment is not None and moment <= latest)


def parse_attribute_timestamp(text: str) -> pd.Timestamp | None:
    """An ISO-8601 timestamp (a date, or date and time; without an offset: UTC) as UTC, or None."""
    try:
        moment = pd.Timestamp(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except (TypeError, ValueError):
        return None
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


# --- known ids -----------------------------------------------------------------------------------


# --- rules ---------------------------------------------------------------------------------------


def _is_in(allowed: Collection[str]) -> Callable[[pd.Series], pd.Series]:
    # Sorted once, looked up by binary search per chunk (as fast as a hash index built once, at a
    # fraction of its memory); `Series.isin` would hash a million known ids again for every chunk.
    known = KnownIds.of(allowed)
    return lambda s: pd.Series(known.contains(s), index=s.index)


def _after(field: str, other: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[field].isna() | df[other].isna() | (df[field] > df[other])


def _not_after(field: str, other: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[field].isna() | df[other].isna() | (df[field] <= df[other])


def _not_in_future(table: SourceTable, now: datetime) -> list[Rule]:
    latest = _utc(now) + CLOCK_SKEW
    return [Rule(column, IN_FUTURE, lambda s: s <= latest) for column in table.timestamps]


# Addresses of this common shape are all accepted by email-validator (see tests): dot-atom local part
# of at most 64 characters, dotted domain of letters/digits/inner hyphens, labels of at most 63
# characters, an alphabetic top-level domain that is not a special-use one, 254 characters in all.
# Everything else is asked to email-validator itself, once per distinct value.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_COMMON_EMAIL = (
    r"(?=.{1,254}$)(?=[^@]{1,64}@)(?!.*@.*[^.@]{64})"
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
    r"@(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+"
    rf"(?!(?:{'|'.join(email_validator.SPECIAL_USE_DOMAIN_NAMES)})$)[A-Za-z]{{2,63}}"
)
COMMON_EMAIL = re.compile(_COMMON_EMAIL, re.IGNORECASE)


def is_valid_email(emails: pd.Series) -> pd.Series:
    """True where the address is valid (email-validator, no deliverability check); vectorised."""
    valid = emails.str.fullmatch(COMMON_EMAIL).fillna(False).astype(bool)
    unusual = emails[~valid]
    if len(unusual):
        valid.loc[unusual.index] = unusual.map(_is_valid_email_address).astype(bool)
    return valid


@functools.lru_cache(maxsize=65536)
def _is_valid_email_address(address: str) -> bool:
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
