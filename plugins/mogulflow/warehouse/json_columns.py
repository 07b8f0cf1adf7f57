"""JSON columns: how mogulflow's tables keep a value as JSON text (a run's details, a sent payload).

One canonical text per value (keys sorted, anything unusual as its text), made from the same JSON
form the Airflow edge hands between tasks (`mogulflow.values.json_form`).
"""

from __future__ import annotations

import json

from mogulflow.values.json_form import Json, to_json


def as_json_text(value: object) -> str:
    """The value (a dataclass, a mapping, plain JSON) as the text of a JSON column."""
    return json.dumps(to_json(value), default=str, sort_keys=True)


def from_json_text(text: object) -> Json:
    """A JSON column's text as JSON; None for a missing or empty value."""
    return json.loads(text) if isinstance(text, str) and text else None
