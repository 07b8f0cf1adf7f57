"""Custom attribute and tag flows: read a customer's attributes, add, change and remove them.

Every write here is safe to replay (it sets values, or adds or removes members of a set), so the
executor may retry each one. Facts and sources: docs/api-notes.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from mogulflow.chartmogul.flows import Call, Flow, segment


def _path(customer_uuid: str, what: str = "") -> str:
    return f"/v1/customers/{segment(customer_uuid)}/attributes{what}"


def get_attributes(customer_uuid: str) -> Flow[dict[str, Any]]:
    """GET …/attributes: `{"tags": [...], "custom": {key: value}, ...}`."""
    body = yield Call("GET", _path(customer_uuid))
    return dict(body)


def add_custom(customer_uuid: str, attributes: Sequence[Mapping[str, Any]]) -> Flow[dict[str, Any]]:
    """POST …/attributes/custom with `[{"type", "key", "value"}]`: every custom attribute after it."""
    body = yield Call("POST", _path(customer_uuid, "/custom"), body={"custom": [dict(a) for a in attributes]})
    return dict(body.get("custom") or {})


def update_custom(customer_uuid: str, values: Mapping[str, Any]) -> Flow[dict[str, Any]]:
    """PUT …/attributes/custom with `{key: value}` (keys it has): every custom attribute after it."""
    body = yield Call("PUT", _path(customer_uuid, "/custom"), body={"custom": dict(values)})
    return dict(body.get("custom") or {})


def remove_custom(customer_uuid: str, keys: Collection[str]) -> Flow[dict[str, Any]]:
    """DELETE …/attributes/custom with `[keys]`: the custom attributes left (204 or 202, see the notes)."""
    body = yield Call("DELETE", _path(customer_uuid, "/custom"), body={"custom": sorted(keys)})
    return dict(body.get("custom") or {})


def add_tags(customer_uuid: str, tags: Collection[str]) -> Flow[list[str]]:
    """POST …/attributes/tags: every tag of the customer after it."""
    body = yield Call("POST", _path(customer_uuid, "/tags"), body={"tags": sorted(tags)})
    return [str(tag) for tag in body.get("tags") or []]


def remove_tags(customer_uuid: str, tags: Collection[str]) -> Flow[list[str]]:
    """DELETE …/attributes/tags: the tags left."""
    body = yield Call("DELETE", _path(customer_uuid, "/tags"), body={"tags": sorted(tags)})
    return [str(tag) for tag in body.get("tags") or []]
