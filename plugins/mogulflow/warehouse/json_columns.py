"""JSON columns: how mogulflow's tables keep a value as JSON text (a run's details, a sent payload).

One canonical text per value (keys sorted, anything unusual as its text), made from the same JSON
form the Airflow edge hands between tasks (`mogulflow.values.json_form`).
"""

from __future__ import annotations

import json

from mogulflow.values.json_form import Json, to_json

# What a flat payload's values are (every sync-state payload's): `to_json` would return them as they are.
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
# `json.dumps(value, default=str, sort_keys=True)` builds this encoder on every call (only the default
# options share one): made once, the same text at ~60% of the cost, for ~200,000 state rows a first load.
_TEXT = json.JSONEncoder(default=str, sort_keys=True)


def as_json_text(value: object) -> str:
    """The value (a dataclass, a mapping, plain JSON) as the text of a JSON column."""
    if type(value) is dict and all(type(k) is str and type(v) in _PLAIN_TYPES for k, v in value.items()):
        # the same text, without `to_json`'s walk: the sync state writes one per row
        return _TEXT.encode(value)
    return _TEXT.encode(to_json(value))


def from_json_text(text: object) -> Json:
    """A JSON column's text as JSON; None for a missing or empty value."""
    return json.loads(text) if isinstance(text, str) and text else None
