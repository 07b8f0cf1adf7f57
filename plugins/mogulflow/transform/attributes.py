"""Attributes and tags: validated `lead_attributes` and `lead_tags` rows → what ChartMogul receives.

One payload per (lead, key) or (lead, tag): its external id in `mogulflow_sync_state` is
`lead_id/key` (`lead_id/tag`). A value in its JSON type (Integer `12`, Decimal `12.5`, Boolean
`true`, Timestamp `2026-01-31T00:00:00Z`, String as is; docs/api-notes.md); `None` removes the key,
`present` false the tag. A new customer carries its attributes and tags in the request that creates
it (`CarriedAttributes`, see `mogulflow.transform.payloads.CustomerPayload`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from mogulflow.validate.rules import canonical_type, parse_attribute_timestamp
from mogulflow.validate.validator import IDENTITY_SEPARATOR
from mogulflow.values.payload_hash import format_api_time


@dataclass(frozen=True, slots=True)
class AttributePayload:
    """One custom attribute of a lead's customer: set `key` to `value` (typed), or remove it (None)."""

    lead_id: str
    key: str
    type: str  # as ChartMogul spells it: String, Integer, Decimal, Timestamp, Boolean
    value: Any  # in its JSON type; None removes the key

    @property
    def external_id(self) -> str:
        return f"{self.lead_id}{IDENTITY_SEPARATOR}{self.key}"

    @property
    def removes(self) -> bool:
        """Whether the row removes the key."""
        return self.value is None

    def fields(self) -> dict[str, Any]:
        """What the sync state remembers (and hashes)."""
        return {"lead_id": self.lead_id, "key": self.key, "type": self.type, "value": self.value}

    def to_api(self, *_: Any, **__: Any) -> dict[str, Any]:
        """One item of a `POST …/attributes/custom` (or a create's `attributes.custom`)."""
        return {"type": self.type, "key": self.key, "value": self.value}


@dataclass(frozen=True, slots=True)
class TagPayload:
    """One tag of a lead's customer: add it (`present`) or remove it."""

    lead_id: str
    tag: str
    present: bool

    @property
    def external_id(self) -> str:
        return f"{self.lead_id}{IDENTITY_SEPARATOR}{self.tag}"

    @property
    def removes(self) -> bool:
        """Whether the row removes the tag."""
        return not self.present

    def fields(self) -> dict[str, Any]:
        """What the sync state remembers (and hashes)."""
        return {"lead_id": self.lead_id, "tag": self.tag, "present": self.present}

    def to_api(self, *_: Any, **__: Any) -> str:
        """The tag as `POST …/attributes/tags` takes it."""
        return self.tag


LeadPayload = AttributePayload | TagPayload


@dataclass(frozen=True, slots=True)
class CarriedAttributes:
    """What a new customer's create request carries: its custom attributes and its tags."""

    custom: tuple[AttributePayload, ...] = ()
    tags: tuple[TagPayload, ...] = ()

    def to_api(self) -> dict[str, Any]:
        """The create body's `attributes` object (custom as an array of typed items, as on create)."""
        body: dict[str, Any] = {}
        if self.tags:
            body["tags"] = [tag.tag for tag in self.tags]
        if self.custom:
            body["custom"] = [attribute.to_api() for attribute in self.custom]
        return body


def typed_value(kind: str, text: str | None) -> Any:
    """A validated value's JSON form for its type (`kind` as ChartMogul spells it)."""
    if text is None:
        return None
    if kind == "Integer":
        return int(text)
    if kind == "Decimal":
        try:
            number = Decimal(text.strip())
        except InvalidOperation as error:
            raise ValueError(f"not a number: {text!r}") from error
        return float(number)
    if kind == "Boolean":
        return text.strip().lower() == "true"
    if kind == "Timestamp":
        moment = parse_attribute_timestamp(text)
        if moment is None:
            raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
        return format_api_time(moment.to_pydatetime())
    return text


def build_attribute_payloads(rows: pd.DataFrame) -> Iterator[AttributePayload]:
    """One payload per valid `lead_attributes` row."""
    values = rows["value"].astype(object).where(rows["value"].notna(), None)
    kinds = rows["type"].astype(object).where(rows["type"].notna(), "").astype(str)
    columns = (rows["lead_id"].astype(str).tolist(), rows["key"].astype(str).tolist(), kinds.tolist())
    for lead_id, key, kind, value in zip(*columns, values.tolist(), strict=True):
        spelled = canonical_type(kind) or kind  # "" for a removal without a type
        yield AttributePayload(lead_id, key, spelled, typed_value(spelled, value))


def build_tag_payloads(rows: pd.DataFrame) -> Iterator[TagPayload]:
    """One payload per valid `lead_tags` row."""
    columns = (rows["lead_id"].astype(str).tolist(), rows["tag"].astype(str).tolist())
    for lead_id, tag, present in zip(*columns, rows["present"].astype(bool).tolist(), strict=True):
        yield TagPayload(lead_id, tag, present)


def carried_by_lead(
    attributes: Iterable[AttributePayload], tags: Iterable[TagPayload]
) -> Mapping[str, CarriedAttributes]:
    """What each lead's create request carries: the keys it sets and the tags it adds (not removals)."""
    custom: dict[str, list[AttributePayload]] = {}
    added: dict[str, list[TagPayload]] = {}
    for attribute in attributes:
        if not attribute.removes:
            custom.setdefault(attribute.lead_id, []).append(attribute)
    for tag in tags:
        if not tag.removes:
            added.setdefault(tag.lead_id, []).append(tag)
    return {
        lead_id: CarriedAttributes(tuple(custom.get(lead_id, ())), tuple(added.get(lead_id, ())))
        for lead_id in custom.keys() | added.keys()
    }
