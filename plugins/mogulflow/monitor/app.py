"""The monitoring page's FastAPI app, every route behind Airflow's login.

The monitoring page's FastAPI app: server-rendered HTML, its JSON, the rejects CSV and the chart
library, every route behind Airflow's login.

A plugin's FastAPI app is open to anyone unless it declares Airflow's auth dependencies, and files
mounted with `StaticFiles` stay open even then: so the app declares, once, that every route needs a
user allowed to read the DAG runs of both mogulflow DAGs (401 without a login, 403 without that
access), and serves its JavaScript through routes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from mogulflow.airflow.resources import open_warehouse
from mogulflow.monitor import queries
from mogulflow.monitor.queries import GRAINS, MONITORED_DAG_IDS, Grain, Overview, Period
from mogulflow.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
# The only files the asset route serves: a name not listed here is a 404, never a path on disk.
ASSETS = {
    "chart.umd.min.js": "text/javascript",
    "chart.js-LICENSE.md": "text/markdown",
    "monitor.js": "text/javascript",
    "monitor.css": "text/css",
}
DEFAULT_PERIOD_DAYS = 30
# A page must not hang while a sync holds the DuckDB file's lock: it says so instead.
WAREHOUSE_LOCK_WAIT_SECONDS = 5.0
RUN_OUTCOME_CLASS = {"success": "ok", "success_with_rejects": "warn", "failed": "bad"}

_templates = Environment(
    loader=FileSystemLoader(PACKAGE_DIR / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def create_app(*, url_prefix: str, ui_path: str) -> FastAPI:
    """The app the plugin mounts at `url_prefix` on Airflow's API server; the UI shows it (in an
    iframe) at `ui_path` under Airflow's base URL, where a new login leads back to."""
    app = FastAPI(
        title="mogulflow monitor",
        # Every route, the assets and the CSV included, needs read access to the monitored DAGs' runs.
        dependencies=[
            Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id))
            for dag_id in MONITORED_DAG_IDS
        ],
        # FastAPI's own /docs and /openapi.json are not routes with dependencies: switch them off.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.url_prefix = url_prefix
    app.state.ui_path = ui_path.strip("/")
    app.add_exception_handler(StarletteHTTPException, _explain_refusal)

    @app.get("/", response_class=HTMLResponse)
    def page(
        request: Request,
        since: date | None = None,
        until: date | None = None,
        grain: Grain = "day",
        data_source: str = "",
        dag_id: str = "",
        lookup: str = "",
        split: str = "",
    ) -> HTMLResponse:
        period = _period(since, until)
        other_dag = dag_id if dag_id and dag_id not in MONITORED_DAG_IDS else ""
        dag_id = "" if other_dag else dag_id
        context: dict[str, Any] = {
            "other_dag": other_dag,
            "period": period,
            "grain": grain,
            "grains": GRAINS,
            "data_source": data_source,
            "dag_id": dag_id,
            "dag_ids": MONITORED_DAG_IDS,
            "lookup_id": lookup.strip(),
            "split": split.strip(),
            "split_keys": (),
            "split_funnel": None,
            "error": None,
        }
        try:
            with _warehouse() as warehouse:
                context["overview"] = queries.overview(
                    warehouse,
                    period,
                    data_source_uuid=data_source or None,
                    grain=grain,
                    dag_id=dag_id or None,
                )
                context["split_keys"] = queries.attribute_keys(warehouse)
                if context["split"]:
                    context["split_funnel"] = queries.funnel_by_attribute(
                        warehouse, period, key=context["split"], grain=grain
                    )
                if context["lookup_id"]:
                    context["story"] = queries.look_up(
                        warehouse, context["lookup_id"], data_source_uuid=data_source or None
                    )
        except WarehouseUnavailable as error:
            context["error"] = str(error)
        return HTMLResponse(_render_page(request, context))

    @app.get("/api/overview")
    def overview_json(
        since: date | None = None,
        until: date | None = None,
        grain: Grain = "day",
        data_source: str = "",
        dag_id: str = "",
        split: str = "",
    ) -> JSONResponse:
        period = _period(since, until)
        with _warehouse(http_error=True) as warehouse:
            found = queries.overview(
                warehouse, period, data_source_uuid=data_source or None, grain=grain, dag_id=dag_id or None
            )
            data = _overview_json(found)
            if split.strip():
                data["split"] = asdict(
                    queries.funnel_by_attribute(warehouse, period, key=split.strip(), grain=grain)
                )
        return JSONResponse(jsonable_encoder(data))

    @app.get("/api/lookup")
    def lookup_json(id: str = Query(min_length=1), data_source: str = "") -> JSONResponse:
        with _warehouse(http_error=True) as warehouse:
            story = queries.look_up(warehouse, id, data_source_uuid=data_source or None)
        return JSONResponse(jsonable_encoder({**asdict(story), "found": story.found}))

    @app.get("/rejects.csv")
    def rejects_csv(
        since: date | None = None, until: date | None = None, data_source: str = ""
    ) -> StreamingResponse:
        period = _period(since, until)
        last_day = date.fromordinal(period.until.toordinal() - 1)
        name = f"mogulflow_rejects_{period.since.isoformat()}_{last_day.isoformat()}.csv"
        return StreamingResponse(
            _csv_lines(period, data_source or None),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/assets/{name}")
    def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail="Not Found")
        # Revalidated by ETag, so a new release's file is picked up without a stale cache.
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return app


# ---- the warehouse --------------------------------------------------------------------------------


class WarehouseUnavailable(RuntimeError):
    """The warehouse could not be opened (connection missing, wrong, or the DuckDB file is busy)."""


@contextlib.contextmanager
def _warehouse(*, http_error: bool = False) -> Iterator[Warehouse]:
    """The warehouse, open for one request and closed afterwards: a DuckDB file stays free for the
    sync's tasks between page loads. `http_error`: fail as a 503 (JSON routes), not for the page."""
    try:
        warehouse = open_warehouse(lock_wait_seconds=WAREHOUSE_LOCK_WAIT_SECONDS)
    except Exception as error:
        log.warning("The monitoring page could not open the warehouse: %s", error)
        message = (
            f"Could not open the warehouse (Airflow connection warehouse_default): {error}. "
            "If a sync is writing to a DuckDB warehouse right now, reload in a moment."
        )
        if http_error:
            raise HTTPException(status_code=503, detail=message) from error
        raise WarehouseUnavailable(message) from error
    try:
        yield warehouse
    finally:
        warehouse.close()


def _csv_lines(period: Period, data_source_uuid: str | None) -> Iterator[str]:
    with _warehouse(http_error=True) as warehouse:
        yield ",".join(queries.REJECTS_CSV_COLUMNS) + "\r\n"
        for frame in queries.iter_rejects_csv_frames(warehouse, period, data_source_uuid=data_source_uuid):
            buffer = io.StringIO()
            frame.to_csv(buffer, header=False, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
            if buffer.tell():
                yield buffer.getvalue()


# ---- request values -----------------------------------------------------------------------------


def _period(since: date | None, until: date | None) -> Period:
    """The chosen days, `until` inclusive on the form (exclusive inside); default the last 30 days."""
    today = datetime.now(UTC).date()
    start = since or Period.last_days(DEFAULT_PERIOD_DAYS, today=today).since
    end = until or today
    if end < start:
        raise HTTPException(status_code=422, detail=f"until ({end}) is before since ({start})")
    return Period(since=start, until=date.fromordinal(end.toordinal() + 1))


def _airflow_root(request: Request) -> str:
    """Airflow's base path as seen by the browser (`root_path` holds it, then our prefix)."""
    return request.scope.get("root_path", "").removesuffix(request.app.state.url_prefix)


def _app_root(request: Request) -> str:
    return request.scope.get("root_path", "")


# ---- rendering ----------------------------------------------------------------------------------


def _render_page(request: Request, context: dict[str, Any]) -> str:
    airflow_root = _airflow_root(request)
    app_root = _app_root(request)
    period: Period = context["period"]
    last_day = date.fromordinal(period.until.toordinal() - 1)
    query = {"since": period.since.isoformat(), "until": last_day.isoformat()}
    if context["data_source"]:
        query["data_source"] = context["data_source"]
    overview: Overview | None = context.get("overview")
    return _templates.get_template("monitor.html").render(
        **context,
        last_day=last_day,
        app_root=app_root,
        csv_url=f"{app_root}/rejects.csv?{urlencode(query)}",
        run_url=lambda run: (
            f"{airflow_root}/dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}"
        ),
        outcome_class=RUN_OUTCOME_CLASS,
        chart_data=_chart_data(overview, context.get("split_funnel")) if overview else None,
        fmt_duration=_duration,
        fmt_percent=_percent,
        fmt_days=_days,
        fmt_time=_time,
    )


def _render_refusal(request: Request, *, status_code: int, signed_in: bool) -> str:
    airflow_root = _airflow_root(request)
    page_in_ui = f"{airflow_root}/{request.app.state.ui_path}"
    login_url = f"{airflow_root}/auth/login?{urlencode({'next': page_in_ui})}"
    return _templates.get_template("refusal.html").render(
        status_code=status_code,
        signed_in=signed_in,
        had_session=COOKIE_NAME_JWT_TOKEN in request.cookies,
        login_url=login_url,
    )


async def _explain_refusal(request: Request, exc: Exception) -> Response:
    """A browser opening the page without a valid login gets a page saying what to do, not JSON;
    API clients (and the assets, the CSV) keep Airflow's JSON answer. The status stays 401/403."""
    assert isinstance(exc, StarletteHTTPException)
    is_page = request.url.path.rstrip("/").endswith(request.app.state.url_prefix)
    wants_page = is_page and "text/html" in request.headers.get("accept", "")
    if exc.status_code in (401, 403) and wants_page:
        # Airflow's JWTRefreshMiddleware puts the user on the request when the cookie is valid: a 403
        # with a user means "no access", without one the login expired or is not a valid one.
        signed_in = getattr(request.state, "user", None) is not None
        return HTMLResponse(
            _render_refusal(request, status_code=exc.status_code, signed_in=signed_in),
            status_code=exc.status_code,
        )
    return await http_exception_handler(request, exc)


def _chart_data(overview: Overview, split: queries.SplitFunnel | None = None) -> dict[str, Any]:
    """What monitor.js draws: one label per day or week, one series per measure (and, split by an
    attribute, one series per value of it)."""
    buckets = overview.funnel.buckets
    return {
        "split": None if split is None else asdict(split),
        "grain": overview.funnel.grain,
        "labels": [b.start.isoformat() for b in buckets],
        "leads": [b.leads for b in buckets],
        "free_trials": [b.free_trials for b in buckets],
        "paid_trials": [b.paid_trials for b in buckets],
        "conversion_percent": [
            None if b.conversion_rate is None else round(100 * b.conversion_rate, 1) for b in buckets
        ],
        "trial_leads": [b.trial_leads for b in buckets],
        "converted_trial_leads": [b.converted_trial_leads for b in buckets],
        "average_cycle_days": [
            None if b.average_cycle_days is None else round(b.average_cycle_days, 1) for b in buckets
        ],
        "conversions": [b.conversions for b in buckets],
        "trial_mix": [overview.funnel.totals.free_trials, overview.funnel.totals.paid_trials],
    }


def _overview_json(found: Overview) -> dict[str, Any]:
    data = asdict(found)
    data["runs"] = [{**asdict(run), "duration_seconds": run.duration_seconds} for run in found.runs]
    data["rejects"]["total"] = found.rejects.total
    data["funnel"]["totals"].update(
        trials=found.funnel.totals.trials,
        conversion_rate=found.funnel.totals.conversion_rate,
        average_cycle_days=found.funnel.totals.average_cycle_days,
    )
    data["reconciliation"]["total"] = found.reconciliation.total
    return data


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f} %"


def _days(days: float | None) -> str:
    return "–" if days is None else f"{days:.1f} days"


def _time(moment: datetime | None) -> str:
    return "–" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
