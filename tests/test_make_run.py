"""`make run`'s script, end to end: sample warehouse, sandbox, `airflow dags test`, the summary."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest
from repo_paths import REPO

pytestmark = pytest.mark.slow


def test_demo_takes_a_free_port_when_8999_is_busy_and_leaves_no_process_behind(tmp_path):
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 8999))
        blocker.listen()
    except OSError:
        pass  # something else holds 8999 already: the demo must avoid it all the same
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "MOGULFLOW"))  # the demo sets up its own Airflow home
    }
    env["MOGULFLOW_DEMO_DIR"] = str(tmp_path / "demo")
    try:
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "run_demo.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        blocker.close()

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [url] = re.findall(r"ChartMogul sandbox at (http://127\.0\.0\.1:\d+)", result.stdout)
    port = int(url.rsplit(":", 1)[1])
    assert port != 8999
    assert re.search(r"leads\s+3000\s+\d+\s+\d+\s+0\s+0\s+0", result.stdout), result.stdout
    assert "mogulflow_rejects" in result.stdout
    with socket.socket() as probe:  # the sandbox was stopped with the script
        assert probe.connect_ex(("127.0.0.1", port)) != 0
