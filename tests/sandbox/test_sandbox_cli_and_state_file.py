"""The command line (start line, clean exit on signals) and the state file across restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mogulflow_sandbox import Faults, SandboxServer

from .sandbox_builders import customer_body, wait_until

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def start_cli(*options: str) -> tuple[subprocess.Popen[str], str]:
    environment = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mogulflow"), "sandbox", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("mogulflow sandbox listening on http://127.0.0.1:"), line
    return process, line.rsplit(" ", 1)[1]


def client_of(server: SandboxServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/v1", auth=("k", ""))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled_then_exits_0(stop_signal: signal.Signals) -> None:
    process, url = start_cli("--api-key", "secret")
    try:
        assert httpx.get(url + "/v1/ping", auth=("secret", "")).json() == {"data": "pong!"}
        assert httpx.get(url + "/v1/ping", auth=("wrong", "")).status_code == 401
    finally:
        process.send_signal(stop_signal)
        _, errors = process.communicate(timeout=10)

    assert process.returncode == 0, errors


def test_cli_fault_options_take_effect() -> None:
    process, url = start_cli("--rate-limit-per-second", "1", "--retry-after", "5")
    try:
        # The faults in force, as the server reports them (two pings a second apart or not would
        # depend on the machine's speed; what the faults do is test_sandbox_faults' business).
        in_force = httpx.get(url + "/_sandbox/faults").json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)

    assert in_force == Faults(rate_limit_per_second=1, retry_after=5).to_mapping()


def test_state_survives_a_restart_through_the_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox-state.json"
    with SandboxServer(state_file=state_file) as first, client_of(first) as client:
        source = client.post("/data_sources", json={"name": "Leads"}).json()["uuid"]
        customer = client.post("/customers", json=customer_body(source)).json()

    with SandboxServer(state_file=state_file) as second, client_of(second) as client:
        found = client.get("/customers", params={"data_source_uuid": source, "external_id": "lead-1"})
        again = client.post("/customers", json=customer_body(source, "lead-2"))

    assert [entry["uuid"] for entry in found.json()["entries"]] == [customer["uuid"]]
    assert again.json()["id"] == customer["id"] + 1


def test_state_file_is_written_while_running(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox-state.json"
    with SandboxServer(state_file=state_file) as server:
        server.state.create_data_source("Leads")

        wait_until(lambda: state_file.exists() and bool(json.loads(state_file.read_text())["data_sources"]))
