"""JSON columns: how mogulflow's tables keep a value as JSON text (a run's details, a sent payload).

One canonical text per value (keys sorted, anything unusual as its text), made from the same JSON
form the Airflow edge hands between tasks (`mogulflow.values.json_form`).
"""

from __future__ import annotations

import json

from mogulflow.values.json_form import Json, to_json

# The same text `json.dumps(value, default=str, sort_keys=True)` makes, with one encoder made once
# (json.dumps builds one per call unless the options are the defaults): ~60% of the cost, for the
# hundreds of thousands of state rows of a first load.
_ENCODER = json.JSONEncoder(default=str, sort_keys=True)
_PLAIN = (str, int, float, bool, type(None))


def as_json_text(value: object) -> str:
    """The value (a dataclass, a mapping, plain JSON) as the text of a JSON column."""
    if type(value) is dict and all(type(key) is str and type(item) in _PLAIN for key, item in value.items()):
        # A sent payload's fields (a million per first load): already JSON, `to_json` would copy it.
        return _ENCODER.encode(value)
    return _ENCODER.encode(to_json(value))


def from_json_text(text: object) -> Json:
    """A JSON column's text as JSON; None for a missing or empty value."""
    return json.loads(text) if isinstance(text, str) and text else None
