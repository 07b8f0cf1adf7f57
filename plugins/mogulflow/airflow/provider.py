"""Provider metadata: registers the `chartmogul` connection type with Airflow.

Found through the `apache_airflow_provider` entry point in pyproject.toml. Airflow 3.3 builds the
connection form from `ui-field-behaviour` and `conn-fields` here, without importing the hook.
"""

from __future__ import annotations

from typing import Any

from mogulflow import __version__

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {"password": "API key", "host": "API base URL"},
    "placeholders": {
        "host": "https://api.chartmogul.com",
        "password": "your ChartMogul API key",
        "extra": '{"requests_per_second": 35, "max_connections": 10, "timeout": 30}',
    },
}

CONN_FIELDS: dict[str, Any] = {
    "requests_per_second": {
        "label": "Requests per second",
        "description": "Client-side pace shared by all requests of a task. ChartMogul allows 40 per account.",
        "schema": {"type": ["number", "null"], "default": 35, "minimum": 0.1, "maximum": 40},
    },
    "max_connections": {
        "label": "Max parallel connections",
        "description": "Parallel requests per client. ChartMogul answers 503 above 20.",
        "schema": {"type": ["integer", "null"], "default": 10, "minimum": 1, "maximum": 20},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Per-request timeout; retries and backoff come on top, within a bounded budget.",
        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
    },
    "scheme": {
        "label": "Scheme",
        "description": "Only for a host given without a scheme (URI-style connections). Default https.",
        "schema": {"type": ["string", "null"], "default": "https", "enum": ["https", "http"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """The provider info dict Airflow's ProvidersManager reads (package name = distribution name)."""
    return {
        "package-name": "mogulflow",
        "name": "mogulflow",
        "description": "ChartMogul connection type and hook for mogulflow's leads and trials sync.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "mogulflow.airflow.hook.ChartMogulHook",
                "hook-name": "ChartMogul",
                "connection-type": "chartmogul",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
