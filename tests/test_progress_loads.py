"""Both load paths log progress through the reporter: the JSON imports (bulk) and the per-object writes.

A direct sync of the sample warehouse (1,000 leads: their creates go through JSON imports; 30 plans:
one by one) against the sandbox, with `MOGULFLOW_PROGRESS_SECONDS=0` so that every update logs.
"""

from __future__ import annotations

import logging
import re

import pytest
from direct_sync import run_sync_directly, sandbox_client

from mogulflow_demo.sample_warehouse import MIN_LEADS, build_sample_warehouse

PROGRESS = re.compile(r"^(?P<what>[a-z]+(?: \(bulk\))?): (?P<done>[\d,]+)/(?P<total>[\d,]+) rows .* rows/s, ")


def progress_lines(caplog, logger: str) -> list[re.Match]:
    found = (PROGRESS.match(r.getMessage()) for r in caplog.records if r.name == logger)
    return [m for m in found if m]


@pytest.mark.slow
def test_bulk_and_per_object_loads_log_done_total_rate_and_eta(tmp_path, sandbox, monkeypatch, caplog):
    monkeypatch.setenv("MOGULFLOW_PROGRESS_SECONDS", "0")
    warehouse = tmp_path / "warehouse.duckdb"
    build_sample_warehouse(warehouse, leads=MIN_LEADS)
    caplog.set_level(logging.INFO)

    with sandbox_client(sandbox.url) as client:
        run_sync_directly(warehouse, client, run_id="progress", full_refresh=True)

    bulk = [m for m in progress_lines(caplog, "mogulflow.load.bulk") if m["what"] == "lead (bulk)"]
    assert len(bulk) >= 2  # one per import at least, then the closing line
    assert bulk[-1]["done"] == bulk[-1]["total"]
    plans = [m for m in progress_lines(caplog, "mogulflow.load.writes") if m["what"] == "plan"]
    assert plans and plans[-1]["done"] == plans[-1]["total"]
