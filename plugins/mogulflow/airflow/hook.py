"""`ChartMogulHook`: an Airflow connection → a paced, retrying `ChartMogulClient`.

The hook only reads the connection; everything about HTTP lives in `mogulflow.chartmogul`, which does not
import Airflow. The API key comes from the connection's password and nowhere else (no constructor
argument), so it never lands in a DAG file, a rendered template or a log line.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from mogulflow.chartmogul.client import AsyncChartMogulClient, ChartMogulClient
from mogulflow.chartmogul.errors import ChartMogulError
from mogulflow.chartmogul.retry import RetryPolicy
from mogulflow.chartmogul.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_TIMEOUT,
    ClientSettings,
    normalise_base_url,
)
from mogulflow.values.errors import SetupError

CONN_TYPE = "chartmogul"
DEFAULT_CONN_ID = "chartmogul_default"
#: Scheme used when the host has none: the URI form `chartmogul://:KEY@127.0.0.1:8999` drops it.
DEFAULT_SCHEME = "https"


class ChartMogulHook(BaseHook):
    """Interact with the ChartMogul REST API v1 through a `chartmogul` connection.

    Connection fields: password = API key; host = API base URL without `/v1` (default
    https://api.chartmogul.com); extras `requests_per_second`, `max_connections`, `timeout` and,
    for URI-style connections whose host lost its scheme, `scheme` (default https).
    """

    conn_name_attr = "chartmogul_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "ChartMogul"

    def __init__(
        self,
        *,
        chartmogul_conn_id: str = DEFAULT_CONN_ID,
        requests_per_second: float | None = None,
        max_connections: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.chartmogul_conn_id = chartmogul_conn_id
        # Explicit arguments override the connection's extras (e.g. a slower pace for one task).
        self._overrides: dict[str, Any] = {
            "requests_per_second": requests_per_second,
            "max_connections": max_connections,
            "timeout": timeout,
        }
        self._retry = retry

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chartmogul_conn_id={self.chartmogul_conn_id!r})"

    def get_client_settings(self) -> ClientSettings:
        """Read the connection into `ClientSettings` (raises `SetupError` naming the bad field)."""
        conn = self.get_connection(self.chartmogul_conn_id)
        if (conn.conn_type or "").lower() != CONN_TYPE:
            raise SetupError(
                f"connection {self.chartmogul_conn_id!r} has type {conn.conn_type!r}; mogulflow needs type "
                f"{CONN_TYPE!r} (password = API key, host = API base URL): recreate it with "
                f"--conn-type {CONN_TYPE}"
            )
        extras = dict(conn.extra_dejson or {})
        api_key = (conn.password or "").strip()
        if not api_key:
            raise SetupError(
                f"connection {self.chartmogul_conn_id!r} has no API key: put it in the password field"
            )
        return ClientSettings(
            base_url=build_base_url(conn.host, conn.port, _extra(extras, "scheme")),
            api_key=api_key,
            requests_per_second=self._setting(
                extras, "requests_per_second", float, DEFAULT_REQUESTS_PER_SECOND
            ),
            max_connections=self._setting(extras, "max_connections", int, DEFAULT_MAX_CONNECTIONS),
            timeout=self._setting(extras, "timeout", float, DEFAULT_TIMEOUT),
            retry=self._retry or RetryPolicy(),
        )

    def get_client(self) -> ChartMogulClient:
        """A new sync client for this connection (the caller closes it; prefer the `client` property)."""
        return ChartMogulClient.from_settings(self.get_client_settings())

    def get_async_client(self) -> AsyncChartMogulClient:
        """A new async client for this connection, sharing the sync client's pace if one exists."""
        limiter = self.__dict__["client"].limiter if "client" in self.__dict__ else None
        return AsyncChartMogulClient.from_settings(self.get_client_settings(), limiter=limiter)

    @cached_property
    def client(self) -> ChartMogulClient:
        """The hook's client, built once: every caller shares its pace, connections and circuit."""
        return self.get_client()

    def get_conn(self) -> ChartMogulClient:
        """The hook's client (Airflow's generic accessor)."""
        return self.client

    def close(self) -> None:
        """Close the cached client's connections, if one was built."""
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()

    def test_connection(self) -> tuple[bool, str]:
        """Ping the API with the connection's key: (True, message) or (False, what went wrong)."""
        # A quick verdict for the UI's "Test" button: two attempts, not the full retry budget.
        try:
            settings = replace(
                self.get_client_settings(), retry=RetryPolicy(max_attempts=2, max_elapsed=15.0)
            )
            with ChartMogulClient.from_settings(settings) as client:
                ok = client.ping()
        except (ChartMogulError, ValueError) as error:
            return False, str(error)
        if not ok:
            return False, "the API answered /v1/ping without 'pong!'"
        return True, "Connection successfully tested"

    def _setting(self, extras: dict[str, Any], name: str, kind: type, default: Any) -> Any:
        value = self._overrides.get(name)
        if value is None:
            value = _extra(extras, name)
        if value is None or value == "":
            return default
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise SetupError(
                f"connection {self.chartmogul_conn_id!r}: extra {name!r} must be a {kind.__name__}, "
                f"got {value!r}"
            ) from None

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Legacy (pre-3.2) form widgets; Airflow 3.3 reads `conn-fields` from the provider info instead."""
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import IntegerField, StringField
            from wtforms.validators import NumberRange, Optional
        except ImportError:  # the 3.x UI does not ship wtforms: the declared conn-fields are used
            return {}
        return {
            "requests_per_second": StringField(
                lazy_gettext("Requests per second"), widget=BS3TextFieldWidget(), default="35"
            ),
            "max_connections": IntegerField(
                lazy_gettext("Max parallel connections"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), NumberRange(min=1, max=20)],
                default=DEFAULT_MAX_CONNECTIONS,
            ),
            "timeout": StringField(
                lazy_gettext("Timeout (seconds)"), widget=BS3TextFieldWidget(), default="30"
            ),
            "scheme": StringField(lazy_gettext("Scheme"), widget=BS3TextFieldWidget(), default="https"),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Legacy form behaviour; the same as the provider info's `ui-field-behaviour`."""
        from mogulflow.airflow.provider import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }


def build_base_url(host: str | None, port: int | None, scheme: str | None = None) -> str:
    """The API base URL (without /v1) from a connection's host, port and optional `scheme` extra.

    `{"host": "http://127.0.0.1:8999"}` (JSON form) is used as is; `chartmogul://:KEY@127.0.0.1:8999`
    (URI form) arrives as host `127.0.0.1`, port 8999 and no scheme, so the scheme comes from the
    `scheme` extra (default https). An empty host means the real API.
    """
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = f"{(scheme or DEFAULT_SCHEME).strip().lower()}://{host}"
    parts = urlsplit(host)
    if port and parts.port is None:
        host = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    return normalise_base_url(host)


def _extra(extras: dict[str, Any], name: str) -> Any:
    # Older UIs stored form fields as `extra__<conn_type>__<name>`; accept both spellings.
    if name in extras:
        return extras[name]
    return extras.get(f"extra__{CONN_TYPE}__{name}")
