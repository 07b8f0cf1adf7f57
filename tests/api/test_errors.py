"""Error bodies of every family the API is known to send become one readable, safe exception."""

from __future__ import annotations

import json

import pytest

from mogulflow.chartmogul.errors import (
    AuthenticationError,
    ChartMogulError,
    NotFoundError,
    RateLimitedError,
    TransientError,
    ValidationError,
    error_for_status,
    parse_error_body,
)


def parse(body: object, status: int = 422, secret: str | None = None):
    text = body if isinstance(body, str) else json.dumps(body)
    return parse_error_body(text, status=status, secret=secret)


def test_family_a_field_map_lists_every_field():
    parsed = parse(
        {"errors": {"external_id": "A unique external ID is required.", "name": "A name is required."}}
    )
    assert parsed.field == "external_id"
    assert parsed.message == "external_id: A unique external ID is required.; name: A name is required."
    assert [e.field for e in parsed.field_errors] == ["external_id", "name"]


def test_family_b_code_message_param():
    parsed = parse(
        {
            "code": 422,
            "message": "The value provided does not appear to be a valid email address.",
            "param": "email",
        }
    )
    assert parsed.message == "The value provided does not appear to be a valid email address."
    assert parsed.field == "email"


def test_family_b_with_null_param_has_no_field():
    parsed = parse({"code": 401, "message": "No valid API key provided", "param": None}, status=401)
    assert (parsed.message, parsed.field) == ("No valid API key provided", None)


def test_family_c_bare_error():
    assert parse({"error": "Data source not found"}, status=404).message == "Data source not found"


def test_family_d_error_with_details_names_the_field():
    parsed = parse(
        {
            "error": "Invalid UUID passed",
            "error_details": [{"param": "uuid", "code": "invalid", "message": "Invalid UUID passed"}],
        }
    )
    assert (parsed.message, parsed.field) == ("Invalid UUID passed", "uuid")


def test_family_e_rails_style_lists():
    parsed = parse(
        {
            "name": ["Name can't be blank"],
            "plan_ids": ["Plan ids can't be blank"],
            "error_details": [{"param": "name", "code": "blank", "message": "Name can't be blank"}],
        }
    )
    assert parsed.message == "name: Name can't be blank; plan_ids: Plan ids can't be blank"
    assert parsed.field == "name"


def test_family_f_per_invoice_errors_are_kept_per_invoice():
    parsed = parse(
        {
            "invoices": [
                {
                    "external_id": "inv-1",
                    "errors": {
                        "external_id": "The external ID for this invoice already exists in our system."
                    },
                },
                {"external_id": "inv-2", "errors": {"currency": "Currency is invalid"}},
                {"external_id": "inv-3", "errors": {}},
            ]
        }
    )
    by_ext = {e.external_id: e for e in parsed.invoice_errors}
    assert by_ext["inv-1"].already_exists
    assert not by_ext["inv-2"].already_exists
    assert by_ext["inv-2"].message == "currency: Currency is invalid"
    assert by_ext["inv-3"].errors == ()
    assert "inv-2: currency: Currency is invalid" in parsed.message


def test_html_error_page_keeps_its_title():
    html = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    assert parse(html, status=502).message == "502 Bad Gateway"


def test_empty_body_says_status():
    assert parse("", status=504).message == "HTTP 504 with an empty body"


def test_plain_text_body_is_the_message():
    assert parse("upstream connect error", status=503).message == "upstream connect error"


def test_unknown_json_shape_does_not_crash():
    assert parse({"detail": "Not Found"}, status=404).message == "Not Found"
    assert parse({"weird": 1}, status=500).message  # some text, never an exception


def test_secret_echoed_by_a_server_is_scrubbed():
    parsed = parse(
        {"code": 401, "message": "key sk_live_abcdef is revoked", "param": None}, secret="sk_live_abcdef"
    )
    assert "sk_live_abcdef" not in parsed.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationError),
        (422, ValidationError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (500, TransientError),
        (503, TransientError),
        (418, ChartMogulError),
    ],
)
def test_status_maps_to_error_class(status, kind):
    error = error_for_status(status, parse({"error": "x"}, status=status), method="GET", path="/v1/ping")
    assert type(error) is kind
    assert error.status == status


def test_str_names_request_status_message_and_field():
    error = error_for_status(
        422,
        parse({"code": 422, "message": "Invalid email", "param": "email"}),
        method="PATCH",
        path="/v1/customers/cus_1",
    )
    assert str(error) == "PATCH /v1/customers/cus_1 → HTTP 422: Invalid email (field 'email')"


def test_already_exists_is_recognised_in_every_known_wording():
    for message in (
        "The external ID for this customer already exists in our system.",
        "A plan with this identifier already exists in our system.",
        "Has already been taken.",
    ):
        error = error_for_status(
            422, parse({"errors": {"external_id": message}}), method="POST", path="/v1/x"
        )
        assert error.already_exists
    other = error_for_status(
        422, parse({"errors": {"name": "A name is required."}}), method="POST", path="/v1/x"
    )
    assert not other.already_exists
