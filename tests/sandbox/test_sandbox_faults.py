"""Fault injection: each option fires, is counted in the request log, and touches /v1 only."""

from __future__ import annotations

import email.utils
import threading

import httpx
import pytest

from mogulflow_sandbox import Faults, SandboxServer

from .sandbox_builders import RateClock, customer_body


def ping_statuses(api: httpx.Client, count: int) -> list[int]:
    return [api.get("/ping").status_code for _ in range(count)]


@pytest.mark.usefixtures("rate_clock")
def test_rate_limit_answers_429_above_the_rate(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rate_limit_per_second=3))

    statuses = ping_statuses(api, 5)

    assert statuses == [200, 200, 200, 429, 429]
    assert sandbox.fault_counts() == {"rate_limited": 2}


@pytest.mark.usefixtures("rate_clock")
def test_rate_limited_answer_has_the_documented_message(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rate_limit_per_second=1))
    api.get("/ping")

    response = api.get("/ping")

    assert response.json() == {
        "code": 429,
        "message": "Your request rate has exceeded our rate limit.",
        "param": None,
    }
    assert "retry-after" not in response.headers


@pytest.mark.usefixtures("rate_clock")
def test_retry_after_is_sent_in_seconds(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rate_limit_per_second=1, retry_after=2))
    api.get("/ping")

    assert api.get("/ping").headers["retry-after"] == "2"


@pytest.mark.usefixtures("rate_clock")
def test_retry_after_can_be_an_http_date(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rate_limit_per_second=1, retry_after=30, retry_after_http_date=True))
    api.get("/ping")

    header = api.get("/ping").headers["retry-after"]

    assert email.utils.parsedate_to_datetime(header) is not None


def test_rate_window_slides_so_requests_pass_again_after_a_second(
    api: httpx.Client, sandbox: SandboxServer, rate_clock: RateClock
) -> None:
    sandbox.set_faults(Faults(rate_limit_per_second=2))
    assert ping_statuses(api, 3) == [200, 200, 429]
    rate_clock.now = rate_clock.start + 0.5
    assert api.get("/ping").status_code == 429  # both still within the last second

    rate_clock.now = rate_clock.start + 1.0

    assert api.get("/ping").status_code == 200


def test_too_many_parallel_requests_answer_503(sandbox: SandboxServer) -> None:
    # The request let in is held a second; the other two leave the barrier with it and reach the
    # sandbox long before that second is over (they are refused without being held).
    sandbox.set_faults(Faults(max_parallel=1, latency_seconds=1.0))
    statuses: list[int] = []
    together = threading.Barrier(3)

    def ping() -> None:
        with httpx.Client(base_url=sandbox.url + "/v1", auth=("k", "")) as client:
            together.wait()
            statuses.append(client.get("/ping").status_code)

    threads = [threading.Thread(target=ping) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 503, 503]
    assert sandbox.fault_counts() == {"too_many_parallel": 2}


def test_error_before_answers_5xx_and_applies_nothing(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    sandbox.set_faults(Faults(error_rate_before=1.0, seed=1))

    response = api.post("/customers", json=customer_body(data_source_uuid))

    assert response.status_code in (500, 502, 503, 504)
    assert sandbox.state.customers() == []
    assert sandbox.requests[-1].fault == "error_before"
    assert sandbox.requests[-1].applied is False


def test_error_after_answers_5xx_but_the_write_is_applied(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    sandbox.set_faults(Faults(error_rate_after=1.0, seed=1))

    response = api.post("/customers", json=customer_body(data_source_uuid))

    assert response.status_code in (500, 502, 504)
    assert [customer["external_id"] for customer in sandbox.state.customers()] == ["lead-1"]
    assert (sandbox.requests[-1].fault, sandbox.requests[-1].applied) == ("error_after", True)


def test_dropped_connection_leaves_no_answer_but_the_write_is_applied(
    api: httpx.Client, sandbox: SandboxServer, data_source_uuid: str
) -> None:
    sandbox.set_faults(Faults(drop_rate_after=1.0))

    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/customers", json=customer_body(data_source_uuid))

    assert [customer["external_id"] for customer in sandbox.state.customers()] == ["lead-1"]
    last = sandbox.requests[-1]
    assert (last.fault, last.status, last.applied) == ("dropped_after", None, True)


def test_after_faults_spare_reads(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(drop_rate_after=0.5, error_rate_after=0.5))

    assert ping_statuses(api, 5) == [200] * 5


def test_after_faults_spare_writes_that_failed(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(error_rate_after=1.0))

    assert api.post("/customers", json={}).status_code == 422


def test_gateway_errors_come_as_html_pages(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(error_rate_before=1.0, seed=3))
    responses = [api.get("/ping") for _ in range(12)]

    html = [r for r in responses if r.status_code in (502, 503, 504)]
    assert html
    assert all(r.headers["content-type"].startswith("text/html") for r in html)


def test_latency_holds_each_request(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(latency_seconds=0.2))

    response = api.get("/ping")

    assert response.elapsed.total_seconds() >= 0.2


def test_same_seed_gives_the_same_fault_sequence(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(error_rate_before=0.5, seed=42))
    first = ping_statuses(api, 20)
    sandbox.set_faults(Faults(error_rate_before=0.5, seed=42))
    second = ping_statuses(api, 20)

    assert first == second
    assert set(first) - {200}


def test_faults_never_touch_the_sandbox_controls(api: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(error_rate_before=1.0))

    with httpx.Client(base_url=sandbox.url) as control:
        assert control.get("/_sandbox/state").status_code == 200


def test_faults_can_be_switched_over_http(api: httpx.Client, sandbox: SandboxServer) -> None:
    with httpx.Client(base_url=sandbox.url) as control:
        response = control.put("/_sandbox/faults", json={"rate_limit_per_second": 1})

    assert response.status_code == 200
    assert sandbox.faults == Faults(rate_limit_per_second=1)


def test_unknown_fault_option_over_http_answers_400(sandbox: SandboxServer) -> None:
    with httpx.Client(base_url=sandbox.url) as control:
        assert control.put("/_sandbox/faults", json={"chaos": True}).status_code == 400


def test_invalid_fault_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Faults(error_rate_before=1.5)
