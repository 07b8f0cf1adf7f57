"""JSON form: the one way a value made of frozen dataclasses becomes JSON, and back.

Tasks hand each other frozen dataclasses (`RunSettings`, `ExtractReport`, `LoadReport`, ...) and the
warehouse keeps some as JSON columns (a run's details). Both stores hold JSON, so each value goes
through `to_json` and comes back through `from_json(Type, data)`, which rebuilds it from the
dataclass's type hints: the Airflow edge (XCom) and the warehouse (`mogulflow.warehouse.json_columns`)
use the same pair.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


def to_json(value: object) -> Json:
    """A JSON-able form of a value made of dataclasses, enums, datetimes, tuples and mappings.

    A mapping whose keys are not texts becomes a list of `[key, value]` pairs.
    """
    if value is None or isinstance(value, bool | int | float):
        return value  # type: ignore[return-value]
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {str(key): to_json(item) for key, item in value.items()}
        return [[to_json(key), to_json(item)] for key, item in value.items()]
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    raise TypeError(f"cannot turn a {type(value).__name__} into JSON: make it a dataclass of plain values")


def from_json(kind: type[T], data: Json) -> T:
    """Rebuild a value of `kind` from what `to_json` made of it."""
    return typing.cast(T, _decode(kind, data))


def _decode(kind: Any, data: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        if data is None:
            return None
        return _decode(options[0], data) if len(options) == 1 else data
    if kind is Any or kind is object:
        return data
    if data is None:
        return None
    if origin in (tuple, list, set, frozenset):
        args = typing.get_args(kind)
        item = args[0] if args else Any
        items = [_decode(item, value) for value in data]
        return tuple(items) if origin is tuple else origin(items)
    if origin in (dict, Mapping, typing.Mapping) or kind in (dict, Mapping):
        key_type, value_type = typing.get_args(kind) or (Any, Any)
        pairs = data.items() if isinstance(data, Mapping) else data
        return {_decode(key_type, key): _decode(value_type, value) for key, value in pairs}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    if kind is datetime:
        return datetime.fromisoformat(data)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(
            **{
                f.name: _decode(hints[f.name], data[f.name])
                for f in dataclasses.fields(kind)
                if f.init and f.name in data
            }
        )
    if kind in (int, float, str, bool):
        return kind(data)
    return data
