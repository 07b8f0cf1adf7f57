"""mogulflow's monitoring page in the Airflow UI: Browse → mogulflow.

Airflow finds this plugin through the package's `airflow.plugins` entry point (and, in a checkout
of the repository without the package installed, through `plugins/mogulflow_monitor.py`). It loads
it in every process that loads plugins (scheduler, workers, every task, the CLI), so this module
imports nothing beyond Airflow's plugin base: the page's FastAPI app
(`mogulflow.monitor.app`, which pulls in FastAPI, Airflow's API security and pandas) is built by
the API server on the first request under the prefix.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/mogulflow"  # not /plugin or /static: plugin mounts win over the UI's own routes
VIEW_ROUTE = "mogulflow"  # the UI shows the page at /plugin/mogulflow
DAG_TAB_ROUTE = "mogulflow-runs"  # and as a tab at /dags/<dag_id>/plugin/mogulflow-runs


class LazyMonitorApp:
    """An ASGI app that builds the monitor's FastAPI app on its first request, then hands every
    request to it."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from mogulflow.monitor.app import create_app

            self._app = create_app(url_prefix=URL_PREFIX, ui_path=f"plugin/{VIEW_ROUTE}")
        await self._app(scope, receive, send)


class MogulflowMonitorPlugin(AirflowPlugin):
    """The monitoring page: runs, rejects, the lead funnel, reconciliation, one id's story."""

    name = "mogulflow_monitor"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": LazyMonitorApp(), "url_prefix": URL_PREFIX, "name": "mogulflow monitor"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "mogulflow",
            # relative: the UI has <base href> at Airflow's base URL
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "url_route": VIEW_ROUTE,
            "destination": "nav",
            "category": "browse",
        },
        {
            # A tab on every DAG's page (Airflow 3.3 cannot limit it to some DAGs): on mogulflow's two
            # DAGs it shows their runs; elsewhere the page says it has nothing for that DAG.
            "name": "mogulflow",
            "href": f"{URL_PREFIX.lstrip('/')}/?dag_id={{DAG_ID}}",
            "url_route": DAG_TAB_ROUTE,
            "destination": "dag",
        },
    ]
