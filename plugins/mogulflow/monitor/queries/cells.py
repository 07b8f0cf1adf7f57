"""Warehouse cells as plain Python values: NaN, NaT and numpy scalars become None and ints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd


def cell_text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def cell_datetime(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime()


def cell_value(value: Any) -> Any:
    """A frame cell as a plain value for a page or JSON: None, str, int, float or datetime."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value
