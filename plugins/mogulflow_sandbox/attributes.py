"""Custom attributes and tags of a customer: the ``/v1/customers/{uuid}/attributes`` endpoints.

What the recordings show (chartmogul-ruby cassettes, 2023 and 2026; see docs/api-notes.md):

- ``GET …/attributes`` → 200 ``{"tags": [...], "stripe": {}, "clearbit": {}, "custom": {...}}``;
- ``POST …/attributes/custom`` ``{"custom": [{"type", "key", "value", "source"?}]}`` → 200
  ``{"custom": {...}}`` (every custom attribute of the customer; timestamps as ``…T00:00:00.000Z``);
- ``PUT …/attributes/custom`` ``{"custom": {key: value}}`` → 200 ``{"custom": {...}}``;
- ``DELETE …/attributes/custom`` ``{"custom": [keys]}`` → 204 (2023) or 202 with
  ``{"custom": {...}, "message": "Custom attributes deleted from customer"}`` (2026): the newer one here;
- ``POST``/``DELETE …/attributes/tags`` ``{"tags": [...]}`` → 200 ``{"tags": [every tag left]}``.

[UNVERIFIED], chosen strictly (`Strictness`-free: the strict reading is the only one): a type must
be spelled as documented (``String``, ``Integer``, ``Decimal``, ``Timestamp``, ``Boolean``); a value
must be of its type in JSON (no ``"12"`` for an Integer); ``PUT`` only changes keys the customer has
(a new key needs its type, so ``POST``); a bad body is a family-B 422 naming ``custom`` or ``tags``.
``POST`` of a key the customer has replaces its value and type (the worst case for whoever set it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mogulflow_sandbox.api_errors import coded_error
from mogulflow_sandbox.records import CustomerRecord
from mogulflow_sandbox.timestamps import TimestampError, format_timestamp, parse_timestamp

ATTRIBUTE_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
STRING_MAX_CHARS = 255  # [CLIENT] chartmogul-mcp-server: "String (≤255 chars)"
KEY_PATTERN = re.compile(r"[A-Za-z0-9_]+")  # [CLIENT] ruby docs: "alphanumeric characters and underscores"
DELETED_MESSAGE = "Custom attributes deleted from customer"


def typed_value(kind: object, key: object, value: object) -> Any:
    """The value as the API stores and answers it; a family-B 422 when it is not of its type."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise coded_error(422, f'The key "{key}" may contain only letters, digits and underscores.', "custom")
    if kind not in ATTRIBUTE_TYPES:
        raise coded_error(422, f'The type of "{key}" must be one of {", ".join(ATTRIBUTE_TYPES)}.', "custom")
    if value is None:
        return None
    if kind == "String" and isinstance(value, str) and len(value) <= STRING_MAX_CHARS:
        return value
    if kind == "Integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "Decimal" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind == "Boolean" and isinstance(value, bool):
        return value
    if kind == "Timestamp" and isinstance(value, str):
        try:
            return format_timestamp(parse_timestamp(value))
        except TimestampError:
            pass
    raise coded_error(422, f'The value of "{key}" is not a valid {kind}.', "custom")


def read_custom_list(custom: object) -> dict[str, tuple[str, Any]]:
    """``[{"type", "key", "value"}, ...]`` (a create body, ``POST …/custom``) → key → (type, value)."""
    if not isinstance(custom, list):
        raise coded_error(422, 'The value of "custom" must be an array of custom attributes.', "custom")
    read: dict[str, tuple[str, Any]] = {}
    for item in custom:
        if not isinstance(item, dict):
            raise coded_error(
                422, 'Each custom attribute must be an object with "type", "key" and "value".', "custom"
            )
        kind, key = item.get("type"), item.get("key")
        read[str(key)] = (str(kind), typed_value(kind, key, item.get("value")))
    return read


def read_tags(tags: object) -> list[str]:
    """``["a", "b"]`` → the tags; anything else, or an empty tag, is a family-B 422."""
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise coded_error(422, 'The value of "tags" must be an array of non-empty strings.', "tags")
    return list(tags)


def set_custom(customer: CustomerRecord, values: dict[str, tuple[str, Any]]) -> None:
    """Set (or replace) custom attributes with their types."""
    for key, (kind, value) in values.items():
        customer.custom[key] = value
        customer.custom_types[key] = kind


def add_tags(customer: CustomerRecord, tags: list[str]) -> None:
    """Add the tags the customer does not have yet (a tag is held once)."""
    for tag in tags:
        if tag not in customer.tags:
            customer.tags.append(tag)


def attributes_body(customer: CustomerRecord) -> dict[str, Any]:
    """``GET …/attributes``: the recorded key order."""
    return {"tags": list(customer.tags), "stripe": {}, "clearbit": {}, "custom": dict(customer.custom)}


def add_custom(customer: CustomerRecord, body: dict[str, Any]) -> dict[str, Any]:
    """``POST …/attributes/custom``: add or replace each attribute; 200 with every custom attribute."""
    set_custom(customer, read_custom_list(body.get("custom")))
    return {"custom": dict(customer.custom)}


def update_custom(customer: CustomerRecord, body: dict[str, Any]) -> dict[str, Any]:
    """``PUT …/attributes/custom``: new values of keys the customer has, each checked against its type."""
    custom = body.get("custom")
    if not isinstance(custom, dict):
        raise coded_error(422, 'The value of "custom" must be an object of key: value.', "custom")
    changes: dict[str, tuple[str, Any]] = {}
    for key, raw in custom.items():
        if key not in customer.custom:
            raise coded_error(
                422, f'The customer has no custom attribute "{key}": add it with its type.', "custom"
            )
        value = raw.get("value") if isinstance(raw, dict) else raw
        kind = customer.custom_types.get(key) or _type_of(customer.custom[key])
        changes[key] = (kind, typed_value(kind, key, value))
    set_custom(customer, changes)
    return {"custom": dict(customer.custom)}


def remove_custom(customer: CustomerRecord, body: dict[str, Any]) -> dict[str, Any]:
    """``DELETE …/attributes/custom``: the named keys go (unknown ones are ignored); 202 with what is left."""
    keys = body.get("custom")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise coded_error(422, 'The value of "custom" must be an array of keys.', "custom")
    for key in keys:
        customer.custom.pop(key, None)
        customer.custom_types.pop(key, None)
    answer: dict[str, Any] = {"custom": dict(customer.custom)} if customer.custom else {}
    return {**answer, "message": DELETED_MESSAGE}


def add_tags_from_body(customer: CustomerRecord, body: dict[str, Any]) -> dict[str, Any]:
    """``POST …/attributes/tags``: 200 with every tag of the customer."""
    add_tags(customer, read_tags(body.get("tags")))
    return {"tags": list(customer.tags)}


def remove_tags(customer: CustomerRecord, body: dict[str, Any]) -> dict[str, Any]:
    """``DELETE …/attributes/tags``: the named tags go (unknown ones are ignored); 200 with the rest."""
    gone = set(read_tags(body.get("tags")))
    customer.tags = [tag for tag in customer.tags if tag not in gone]
    return {"tags": list(customer.tags)}


def _type_of(value: Any) -> str:
    """The type of a value stored before types were kept (an older state file)."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Decimal"
    return "String"


#: What each write to a customer's attributes does, by the name the routes use.
WRITES: dict[str, Callable[[CustomerRecord, dict[str, Any]], dict[str, Any]]] = {
    "add_custom": add_custom,
    "update_custom": update_custom,
    "remove_custom": remove_custom,
    "add_tags": add_tags_from_body,
    "remove_tags": remove_tags,
}
