"""The hook turns a `chartmogul` connection (JSON or URI form) into a correctly configured client."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mogulflow.airflow.hook import ChartMogulHook, build_base_url
from mogulflow.airflow.provider import get_provider_info

KEY = "cm_test_key_abcdefghij"


def set_connection(monkeypatch, conn_id: str, value: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)


def test_json_form_keeps_the_http_scheme(monkeypatch):
    conn = {"conn_type": "chartmogul", "host": "http://127.0.0.1:8999", "password": KEY}
    set_connection(monkeypatch, "chartmogul_default", json.dumps(conn))
    settings = ChartMogulHook().get_client_settings()
    assert settings.base_url == "http://127.0.0.1:8999"
    assert settings.api_key == KEY


def test_uri_form_rebuilds_the_base_url_from_the_scheme_extra(monkeypatch):
    set_connection(monkeypatch, "cm_uri", f"chartmogul://:{KEY}@127.0.0.1:8999?scheme=http")
    assert (
        ChartMogulHook(chartmogul_conn_id="cm_uri").get_client_settings().base_url == "http://127.0.0.1:8999"
    )


def test_uri_form_without_scheme_extra_defaults_to_https(monkeypatch):
    set_connection(monkeypatch, "cm_uri", f"chartmogul://:{KEY}@api.chartmogul.com")
    assert (
        ChartMogulHook(chartmogul_conn_id="cm_uri").get_client_settings().base_url
        == "https://api.chartmogul.com"
    )


def test_empty_host_means_the_real_api(monkeypatch):
    set_connection(
        monkeypatch, "chartmogul_default", json.dumps({"conn_type": "chartmogul", "password": KEY})
    )
    assert ChartMogulHook().get_client_settings().base_url == "https://api.chartmogul.com"


@pytest.mark.parametrize(
    ("host", "port", "scheme", "expected"),
    [
        ("https://api.chartmogul.com/v1/", None, None, "https://api.chartmogul.com"),
        ("http://127.0.0.1", 8999, None, "http://127.0.0.1:8999"),
        ("127.0.0.1", 8999, "HTTP", "http://127.0.0.1:8999"),
        ("", None, None, "https://api.chartmogul.com"),
    ],
)
def test_build_base_url(host, port, scheme, expected):
    assert build_base_url(host, port, scheme) == expected


def test_extras_configure_pace_parallelism_and_timeout(monkeypatch):
    conn = {
        "conn_type": "chartmogul",
        "host": "http://127.0.0.1:8999",
        "password": KEY,
        "extra": {"requests_per_second": "12.5", "max_connections": 4, "timeout": 7},
    }
    set_connection(monkeypatch, "chartmogul_default", json.dumps(conn))
    hook = ChartMogulHook()
    settings = hook.get_client_settings()
    assert (settings.requests_per_second, settings.max_connections, settings.timeout) == (12.5, 4, 7.0)
    assert hook.client is hook.client  # cached: one pace for the whole task
    assert hook.client.limiter.requests_per_second == 12.5
    hook.close()


def test_bad_extra_names_the_field(monkeypatch):
    conn = {"conn_type": "chartmogul", "password": KEY, "extra": {"max_connections": "lots"}}
    set_connection(monkeypatch, "chartmogul_default", json.dumps(conn))
    with pytest.raises(ValueError, match="max_connections"):
        ChartMogulHook().get_client_settings()


def test_missing_key_is_a_clear_error(monkeypatch):
    set_connection(monkeypatch, "chartmogul_default", json.dumps({"conn_type": "chartmogul", "host": "x"}))
    with pytest.raises(ValueError, match="password"):
        ChartMogulHook().get_client_settings()


def test_test_connection_reports_an_unreachable_api_without_the_key(monkeypatch):
    conn = {"conn_type": "chartmogul", "host": "http://127.0.0.1:9", "password": KEY}
    set_connection(monkeypatch, "chartmogul_default", json.dumps(conn))
    ok, message = ChartMogulHook().test_connection()
    assert not ok
    assert "ConnectError" in message and KEY not in message


def test_hook_repr_has_no_key(monkeypatch):
    set_connection(
        monkeypatch, "chartmogul_default", json.dumps({"conn_type": "chartmogul", "password": KEY})
    )
    hook = ChartMogulHook()
    assert KEY not in repr(hook) and KEY not in repr(hook.client)
    hook.close()


def test_provider_info_matches_airflows_schema():
    from importlib.resources import files

    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "mogulflow"
    (conn_type,) = info["connection-types"]
    assert conn_type["hook-class-name"] == "mogulflow.airflow.hook.ChartMogulHook"
    assert conn_type["connection-type"] == ChartMogulHook.conn_type == "chartmogul"
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"password": "API key", "host": "API base URL"}
    assert behaviour["placeholders"]["host"] == "https://api.chartmogul.com"


def test_conn_fields_match_airflows_provider_yaml_schema():
    from importlib.resources import files

    yaml_schema = json.loads(files("airflow").joinpath("provider.yaml.schema.json").read_text())
    conn_type_schema = yaml_schema["properties"]["connection-types"]["items"]
    jsonschema.validate(get_provider_info()["connection-types"][0], conn_type_schema)
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert {"requests_per_second", "max_connections", "timeout"} <= set(fields)
    assert all(f["description"] and f["schema"]["type"] for f in fields.values())


def test_legacy_ui_field_behaviour_agrees_with_the_provider_info():
    behaviour = ChartMogulHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "API key"
    assert "port" in behaviour["hidden_fields"]
