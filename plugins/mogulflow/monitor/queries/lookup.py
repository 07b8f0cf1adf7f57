"""One id's story: its sync state, the runs that saw it, why it was rejected or failed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mogulflow.monitor.queries.cells import cell_datetime, cell_text, cell_value
from mogulflow.monitor.queries.overview import RunVerdict
from mogulflow.values.constants import (
    LEADS_TRIALS_DAG_ID,
    REJECTS_TABLE,
    RUNS_TABLE,
    STATE_TABLE,
)
from mogulflow.warehouse.connection import Warehouse

LOOKUP_RUN_LIMIT = 50


@dataclass(frozen=True)
class StateRow:
    """A `mogulflow_sync_state` entry of the looked-up id."""

    entity: str
    data_source_uuid: str
    status: str
    chartmogul_uuid: str | None
    synced_at: datetime
    run_id: str
    last_error: str | None


@dataclass(frozen=True)
class Lookup:
    """The story of one lead or trial id: why it is (not) in ChartMogul."""

    source_id: str
    source_rows: Mapping[str, Mapping[str, Any]]  # table → its latest row with that id
    runs: tuple[RunVerdict, ...]
    states: tuple[StateRow, ...]
    conversion: Mapping[str, Any] | None  # the lead's conversion row, when it converted
    trial_ids: tuple[str, ...] = ()  # a lead's trials

    @property
    def found(self) -> bool:
        return bool(self.source_rows or self.runs or self.states)


_LOOKUP_TABLES = {"leads": "lead_id", "trials": "trial_id"}


def look_up(warehouse: Warehouse, source_id: str, *, data_source_uuid: str | None = None) -> Lookup:
    """Why a lead or trial is (not) in ChartMogul: its source row, every run that saw it and what
    that run did with it, its sync state and ChartMogul uuid, and whether it converted (merged)."""
    source_id = source_id.strip()
    source_rows: dict[str, dict[str, Any]] = {}
    for table, id_column in _LOOKUP_TABLES.items():
        if not warehouse.table_exists(table):
            continue
        frame = warehouse.query_frame(
            f"SELECT * FROM {table} WHERE {id_column} = :id ORDER BY updated_at DESC LIMIT 1",
            {"id": source_id},
        )
        if not frame.empty:
            source_rows[table] = {k: cell_value(v) for k, v in frame.iloc[0].to_dict().items()}
    trial_ids: tuple[str, ...] = ()
    conversion: dict[str, Any] | None = None
    if "leads" in source_rows:
        if warehouse.table_exists("trials"):
            trial_ids = tuple(
                str(t)
                for t in warehouse.query_frame(
                    "SELECT DISTINCT trial_id FROM trials WHERE lead_id = :id ORDER BY trial_id",
                    {"id": source_id},
                )["trial_id"]
            )
        if warehouse.table_exists("conversions"):
            frame = warehouse.query_frame(
                "SELECT * FROM conversions WHERE lead_id = :id ORDER BY converted_at LIMIT 1",
                {"id": source_id},
            )
            if not frame.empty:
                conversion = {k: cell_value(v) for k, v in frame.iloc[0].to_dict().items()}
    states = _states_of(warehouse, source_id, data_source_uuid)
    runs = _runs_that_saw(warehouse, source_id, source_rows, states, data_source_uuid)
    return Lookup(
        source_id=source_id,
        source_rows=source_rows,
        runs=runs,
        states=states,
        conversion=conversion,
        trial_ids=trial_ids,
    )


def _states_of(warehouse: Warehouse, source_id: str, data_source_uuid: str | None) -> tuple[StateRow, ...]:
    if not warehouse.table_exists(STATE_TABLE):
        return ()
    where = "external_id = :id" + (" AND data_source_uuid = :ds" if data_source_uuid else "")
    frame = warehouse.query_frame(
        "SELECT entity, data_source_uuid, status, chartmogul_uuid, synced_at, run_id, payload "
        f"FROM {STATE_TABLE} WHERE {where} ORDER BY entity, data_source_uuid",
        {"id": source_id, "ds": data_source_uuid} if data_source_uuid else {"id": source_id},
    )
    return tuple(
        StateRow(
            entity=str(row.entity),
            data_source_uuid=str(row.data_source_uuid),
            status=str(row.status),
            chartmogul_uuid=cell_text(row.chartmogul_uuid),
            synced_at=cell_datetime(row.synced_at) or datetime.min,
            run_id=str(row.run_id),
            last_error=_error_in_payload(row.payload),
        )
        for row in frame.itertuples(index=False)
    )


def _runs_that_saw(
    warehouse: Warehouse,
    source_id: str,
    source_rows: Mapping[str, Mapping[str, Any]],
    states: Sequence[StateRow],
    data_source_uuid: str | None,
) -> tuple[RunVerdict, ...]:
    """Runs that rejected the id, wrote its state, or extracted it (a full refresh after the source
    row's current `updated_at`, or a window holding it), newest first, with what each did."""
    if not warehouse.table_exists(RUNS_TABLE):
        return ()
    params: dict[str, Any] = {"id": source_id}
    seen = []
    if warehouse.table_exists(REJECTS_TABLE):
        seen.append(
            f"EXISTS (SELECT 1 FROM {REJECTS_TABLE} r WHERE r.run_id = u.run_id "
            "AND r.dag_id = u.dag_id AND r.source_id = :id)"
        )
    state_runs = sorted({s.run_id for s in states})
    for n, run_id in enumerate(state_runs):
        params[f"state_run_{n}"] = run_id
    if state_runs:
        seen.append(f"u.run_id IN ({', '.join(f':state_run_{n}' for n in range(len(state_runs)))})")
    updated = [row.get("updated_at") for row in source_rows.values() if row.get("updated_at")]
    if updated:
        params["updated_at"] = max(updated)
        params["leads_trials_dag"] = LEADS_TRIALS_DAG_ID
        seen.append(
            "(u.dag_id = :leads_trials_dag AND ((u.full_refresh AND u.started_at >= :updated_at) "
            "OR (u.window_start <= :updated_at AND :updated_at < u.window_end)))"
        )
    if not seen:
        return ()
    ds_filter = " AND u.data_source_uuid = :ds" if data_source_uuid else ""
    if data_source_uuid:
        params["ds"] = data_source_uuid
    frame = warehouse.query_frame(
        "SELECT u.run_id, u.dag_id, u.started_at, u.outcome, u.dry_run, u.details FROM "
        f"{RUNS_TABLE} u WHERE ({' OR '.join(seen)}){ds_filter} "
        f"ORDER BY u.started_at DESC LIMIT {LOOKUP_RUN_LIMIT}",
        params,
    )
    reasons = _reject_reasons(warehouse, source_id)
    state_by_run = {s.run_id: s for s in states}
    verdicts = []
    for row in frame.itertuples(index=False):
        run_id, dag_id = str(row.run_id), str(row.dag_id)
        rejected = reasons.get((run_id, dag_id))
        state = state_by_run.get(run_id)
        api_error = _api_error_in_details(row.details, source_id)
        if rejected:
            waiting = state is not None and state.status == "waiting"
            verdict, detail = ("waiting" if waiting else "rejected"), rejected
        elif api_error:
            verdict, detail = "failed", api_error
        elif state is not None:
            verdict = state.status
            detail = f"sync state {state.status}" + (
                f", ChartMogul uuid {state.chartmogul_uuid}" if state.chartmogul_uuid else ""
            )
        else:
            verdict = "extracted"
            detail = "valid; sent, or unchanged since an earlier run" if not row.dry_run else "dry run"
        verdicts.append(
            RunVerdict(
                run_id=run_id,
                dag_id=dag_id,
                started_at=cell_datetime(row.started_at) or datetime.min,
                outcome=str(row.outcome),
                dry_run=bool(row.dry_run),
                verdict=verdict,
                detail=detail,
            )
        )
    return tuple(verdicts)


def _reject_reasons(warehouse: Warehouse, source_id: str) -> dict[tuple[str, str], str]:
    if not warehouse.table_exists(REJECTS_TABLE):
        return {}
    frame = warehouse.query_frame(
        f"SELECT run_id, dag_id, entity, reason FROM {REJECTS_TABLE} WHERE source_id = :id", {"id": source_id}
    )
    reasons: dict[tuple[str, str], str] = {}
    for row in frame.itertuples(index=False):
        key = (str(row.run_id), str(row.dag_id))
        text = f"{row.entity}: {row.reason}"
        reasons[key] = f"{reasons[key]}; {text}" if key in reasons else text
    return reasons


def _api_error_in_details(details: Any, source_id: str) -> str | None:
    """The API error a run's details (`mogulflow_runs.details`) keep for this id, if any."""
    try:
        parsed = json.loads(details) if isinstance(details, str) and details else {}
    except ValueError:
        return None
    for errors in (parsed.get("api_errors") or {}).values():
        for error in errors or ():
            if isinstance(error, Mapping) and error.get("external_id") == source_id:
                status = error.get("status")
                return f"{error.get('message')}" + (f" (HTTP {status})" if status else "")
    return None


def _error_in_payload(payload: Any) -> str | None:
    try:
        parsed = json.loads(payload) if isinstance(payload, str) and payload else {}
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, Mapping) else None
    return str(error) if error else None
