"""Settings: what a run decides at its start, from its params and data interval.

`chartmogul_leads_trials` and `chartmogul_merge_converted_leads` share `RunSettings` and its
defaults; the merge DAG adds the pace of its wait for paying customers (`MergeSettings`). The
param defaults are written once, in `mogulflow.values.constants`: the DAG files' trigger forms and
the resolution below both read them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NotRequired, TypedDict, Unpack

from mogulflow.values.constants import (
    DEFAULT_DATA_SOURCE_NAME,
    DEFAULT_LOOKUP_INTERVAL_SECONDS,
    DEFAULT_LOOKUP_TIMEOUT_SECONDS,
    DEFAULT_MAX_DELETE_RATIO,
    DEFAULT_MAX_REJECT_RATIO,
    DEFAULT_MIN_REJECTS_TO_FAIL,
)
from mogulflow.values.entities import Window
from mogulflow.values.errors import SetupError

log = logging.getLogger(__name__)

# A manual run with neither a data interval nor start/end reads this far back.
DEFAULT_LOOKBACK = timedelta(days=1)

ParamValue = str | int | float | bool | None


@dataclass(frozen=True)
class RunSettings:
    """Everything a run decided at its start; every task of the run reads the same."""

    run_id: str
    dag_id: str
    window: Window
    started_at: datetime
    dry_run: bool
    data_source_name: str
    max_reject_ratio: float
    # An entity's rejects fail the run only from this many rows on (and above max_reject_ratio).
    min_rejects_to_fail: int = DEFAULT_MIN_REJECTS_TO_FAIL
    # Delete what mogulflow created and the source no longer holds (only ever with a full refresh).
    mirror_deletes: bool = False
    # Above this share of the synced customers, mirror deletes wait for a person's approval...
    max_delete_ratio: float = DEFAULT_MAX_DELETE_RATIO
    # ...unless the run's conf approved them in advance (`airflow dags test`, scripted backfills).
    approve_deletes: bool = False

    @classmethod
    def unresolved(cls, run_id: str, dag_id: str, data_source_name: str, *, at: datetime) -> RunSettings:
        """The settings of a run whose params did not resolve (a param that makes no sense): an empty
        window at its start, so that its failure can still be recorded."""
        return cls(
            run_id=run_id,
            dag_id=dag_id,
            window=Window(at, at),
            started_at=at,
            dry_run=False,
            data_source_name=data_source_name,
            max_reject_ratio=0.0,
        )


@dataclass(frozen=True)
class MergeSettings:
    """A merge run's settings: the shared run settings plus the wait's pace."""

    run: RunSettings
    lookup_interval_seconds: float = DEFAULT_LOOKUP_INTERVAL_SECONDS
    lookup_timeout_seconds: float = DEFAULT_LOOKUP_TIMEOUT_SECONDS


def parse_utc(text: str | datetime | None) -> datetime | None:
    """An ISO-8601 text (or datetime) as an aware UTC datetime; None or "" stays None."""
    if text is None or text == "":
        return None
    moment = text if isinstance(text, datetime) else datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _param_time(params: Mapping[str, ParamValue], name: str) -> datetime | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_utc(str(value))
    except ValueError:
        raise SetupError(
            f"param {name!r} must be an ISO-8601 date-time such as 2025-03-01T00:00:00Z, found {value!r}"
        ) from None


def _as_bool(value: ParamValue) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "on"}
    return bool(value)


def _number(params: Mapping[str, ParamValue], name: str, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SetupError(f"param {name!r} must be a number, found {value!r}") from None


class RunIdentity(TypedDict):
    """Which run is resolving its settings, as Airflow's context tells it (`resolve_settings`'s keywords)."""

    run_id: str
    dag_id: str
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    started_at: NotRequired[datetime | None]


def resolve_window(
    params: Mapping[str, ParamValue],
    *,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    started_at: datetime,
) -> Window:
    """The run's window: `full_refresh` wins; then explicit `start`/`end` (a missing `end` means the
    run's start); then the data interval; a run with neither reads the 24 hours before it started."""
    start = _param_time(params, "start")
    end = _param_time(params, "end")
    if _as_bool(params.get("full_refresh", False)):
        if start is not None or end is not None:
            raise SetupError(
                "params 'start'/'end' and 'full_refresh' exclude each other: full_refresh reads every row; "
                "leave start and end empty, or set full_refresh to false"
            )
        return Window(None, None, True)
    if start is not None or end is not None:
        if start is None:
            raise SetupError("param 'end' was given without 'start': give both (ISO-8601, UTC) or neither")
        end = end or started_at
        if end < start:
            raise SetupError(
                f"param 'end' ({end.isoformat()}) is before 'start' ({start.isoformat()}): swap them"
            )
        return Window(start, end)
    if (
        data_interval_start is not None
        and data_interval_end is not None
        and data_interval_end > data_interval_start
    ):
        return Window(data_interval_start.astimezone(UTC), data_interval_end.astimezone(UTC))
    log.info("No data interval and no start/end params: reading the 24 hours before the run started.")
    return Window(started_at - DEFAULT_LOOKBACK, started_at)


def resolve_settings(
    params: Mapping[str, ParamValue],
    *,
    run_id: str,
    dag_id: str,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    started_at: datetime | None = None,
) -> RunSettings:
    """Decide the run's window, data source and reject limits from its params and data interval."""
    started = (started_at or datetime.now(UTC)).astimezone(UTC)
    window = resolve_window(
        params,
        data_interval_start=data_interval_start,
        data_interval_end=data_interval_end,
        started_at=started,
    )
    ratio = _number(params, "max_reject_ratio", DEFAULT_MAX_REJECT_RATIO)
    if not 0 <= ratio <= 1:
        raise SetupError(f"param 'max_reject_ratio' must be between 0 and 1, found {ratio}")
    floor = _number(params, "min_rejects_to_fail", DEFAULT_MIN_REJECTS_TO_FAIL)
    if floor < 0 or floor != int(floor):
        raise SetupError(
            f"param 'min_rejects_to_fail' must be a whole number of rows (0 or more), found {floor}"
        )
    delete_ratio = _number(params, "max_delete_ratio", DEFAULT_MAX_DELETE_RATIO)
    if not 0 <= delete_ratio <= 1:
        raise SetupError(f"param 'max_delete_ratio' must be between 0 and 1, found {delete_ratio}")
    mirror = _as_bool(params.get("mirror_deletes", False))
    if mirror and not window.full_refresh:
        log.info("mirror_deletes acts only with full_refresh: this run deletes nothing that left the source.")
    return RunSettings(
        run_id=run_id,
        dag_id=dag_id,
        window=window,
        started_at=started,
        dry_run=_as_bool(params.get("dry_run", False)),
        data_source_name=str(params.get("data_source_name") or DEFAULT_DATA_SOURCE_NAME).strip(),
        max_reject_ratio=ratio,
        min_rejects_to_fail=int(floor),
        mirror_deletes=mirror and window.full_refresh,
        max_delete_ratio=delete_ratio,
        approve_deletes=_as_bool(params.get("approve_deletes", False)),
    )


def resolve_merge_settings(params: Mapping[str, ParamValue], **run: Unpack[RunIdentity]) -> MergeSettings:
    """The run's window and data source exactly as `resolve_settings` decides them, plus the wait.

    `lookup_interval_seconds` must be positive; `lookup_timeout_seconds` may be 0 (look once, no wait).
    """
    settings = resolve_settings(params, **run)
    interval = _number(params, "lookup_interval_seconds", DEFAULT_LOOKUP_INTERVAL_SECONDS)
    timeout = _number(params, "lookup_timeout_seconds", DEFAULT_LOOKUP_TIMEOUT_SECONDS)
    if interval <= 0:
        raise SetupError(f"param 'lookup_interval_seconds' must be positive, found {interval}")
    if timeout < 0:
        raise SetupError(f"param 'lookup_timeout_seconds' must not be negative, found {timeout}")
    return MergeSettings(settings, interval, timeout)
