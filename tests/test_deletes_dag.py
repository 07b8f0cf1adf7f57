"""Deletes end to end under `airflow dags test`, as outside suites run the DAG: mirror with the conf's
pre-approval, the guard answered by a person through Airflow's real HITL REST API (approve, reject),
and a kill -9 in the middle of the deletes followed by a run that ends exact.

The sandbox serves ChartMogul over HTTP; the warehouse is the hand-written DuckDB of `sample_rows`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import duckdb
import httpx
import pytest
from airflow_setup import FULL_REFRESH_CONF
from repo_paths import REPO
from test_deletes import add_erasure, text_cells

from mogulflow.monitor.queries.deletions import deletions as page_deletions
from mogulflow.monitor.queries.periods import Period
from mogulflow.values.deletions import erased_id
from mogulflow.warehouse.connection import Warehouse
from mogulflow_sandbox import Faults

pytestmark = pytest.mark.slow

DAG_ID = "chartmogul_leads_trials"
AIRFLOW = str(REPO / ".venv" / "bin" / "airflow")
MIRROR = {**FULL_REFRESH_CONF, "mirror_deletes": True}
PASSWORDS = {"admin": "admin-password-deletes"}
SERVER_START_TIMEOUT = 180.0


def sql(path, statement, *params):
    connection = duckdb.connect(str(path))
    try:
        result = connection.execute(statement, params or None)
        return result.fetchall() if result.description else None
    finally:
        connection.close()


def dags_test_command(conf: dict) -> list[str]:
    return [AIRFLOW, "dags", "test", DAG_ID, "--conf", json.dumps(conf)]


def dags_test(conf: dict) -> str:
    """`airflow dags test` to its end; its output."""
    result = subprocess.run(
        dags_test_command(conf), env=os.environ.copy(), capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def customers_and_invoices(sandbox) -> tuple[set[str], set[str]]:
    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    customers = {c["external_id"] for c in sandbox.state.customers(ds)}
    return customers, {i["external_id"] for i in sandbox.state.invoices(data_source_uuid=ds)}


def last_run(path) -> dict:
    [row] = sql(
        path,
        "SELECT run_id, outcome, message, leads_deleted, trials_deleted FROM mogulflow_runs "
        "WHERE dag_id = ? ORDER BY started_at DESC LIMIT 1",
        DAG_ID,
    )
    return dict(zip(("run_id", "outcome", "message", "leads_deleted", "trials_deleted"), row, strict=True))


def deletions(path) -> list[tuple]:
    return sql(
        path, "SELECT entity, external_id, reason FROM mogulflow_deletions ORDER BY entity, external_id"
    )


@pytest.fixture
def synced(airflow_db, connections, sandbox, warehouse_path):
    """The sample warehouse synced once (full refresh); then L2 and the trial T3 leave the source."""
    dags_test(dict(FULL_REFRESH_CONF))
    assert customers_and_invoices(sandbox) == ({"L1", "L2", "L3", "L4"}, {"T1", "T2", "T3"})
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id = 'L2'")
    sql(warehouse_path, "DELETE FROM trials WHERE trial_id = 'T3'")
    return warehouse_path


def test_mirror_with_approve_deletes_in_the_conf_deletes_exactly_the_gone_lead_and_trial(synced, sandbox):
    dags_test({**MIRROR, "approve_deletes": True})

    assert customers_and_invoices(sandbox) == ({"L1", "L3", "L4"}, {"T1"})
    run = last_run(synced)
    assert (run["leads_deleted"], run["trials_deleted"]) == (1, 2)
    assert deletions(synced) == [
        ("lead", "L2", "mirror"),
        ("trial", "T2", "mirror"),
        ("trial", "T3", "mirror"),
    ]


def test_a_dry_run_under_dags_test_lists_what_it_would_delete(synced, sandbox):
    dags_test({**MIRROR, "dry_run": True})

    assert customers_and_invoices(sandbox) == ({"L1", "L2", "L3", "L4"}, {"T1", "T2", "T3"})
    [(details,)] = sql(synced, "SELECT details FROM mogulflow_runs WHERE dry_run")
    assert json.loads(details)["would_delete"] == {"lead": ["L2"], "trial": ["T3"]}
    assert deletions(synced) == []


# ---- the guard answered through Airflow's HITL API -------------------------------------------------


@dataclass(frozen=True)
class ApiServer:
    url: str
    token: str

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def patch(self, path: str, body: dict) -> httpx.Response:
        return httpx.patch(
            f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(airflow_db, tmp_path_factory) -> Iterator[ApiServer]:
    """The real Airflow API server on the suite's metadata DB: where a person's answer arrives."""
    home = tmp_path_factory.mktemp("api_server")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "deletes-e2e-secret",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }
    log = home / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [AIRFLOW, "api-server", "--port", str(port), "-H", "127.0.0.1", "-w", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server not healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        answer = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": PASSWORDS["admin"]})
        assert answer.status_code == 201, answer.text
        yield ApiServer(url, answer.json()["access_token"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def running_runs(api: ApiServer) -> list[dict]:
    return api.get(f"/api/v2/dags/{DAG_ID}/dagRuns?state=running").json().get("dag_runs", [])


def wait_for_the_question(
    api: ApiServer, runner: subprocess.Popen, earlier: set[str], timeout: float = 300.0
) -> tuple[str, dict]:
    """The new DAG run's id and the approval request it shows a person (Required actions); `earlier`:
    runs that were running before (a killed runner leaves its run running in the metadata DB)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.poll() is None, runner.communicate()[0][-4000:]
        for run in running_runs(api):
            if run["dag_run_id"] in earlier:
                continue
            found = api.get(hitl_path(run["dag_run_id"]))
            if found.status_code == 200:
                return run["dag_run_id"], found.json()
        time.sleep(1)
    raise AssertionError("the run never asked for approval")


def hitl_path(run_id: str) -> str:
    """The approval request of one run (map index -1: the task is not mapped)."""
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_deletes/-1/hitlDetails"


def answer(api: ApiServer, run_id: str, option: str) -> None:
    response = api.patch(hitl_path(run_id), {"chosen_options": [option], "params_input": {}})
    assert response.status_code == 200, response.text


def monitored_deletions(path, timeout: float = 120.0):
    """What the monitoring page shows about deletes (its query, on a read-only connection), once the
    run's loads, which go on while the question waits, leave the DuckDB file to a reader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            warehouse = Warehouse(duckdb.connect(str(path), read_only=True), "duckdb")
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        return page_deletions(warehouse, Period(since=date(2020, 1, 1), until=date(2100, 1, 1)))
    finally:
        warehouse.close()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# The screenshot goes to var/ (git-ignored); MOGULFLOW_UPDATE_SCREENSHOT=1 refreshes docs/'s copy.
SCREENSHOT = (
    REPO / "docs" / "deletes-approval.png"
    if os.environ.get("MOGULFLOW_UPDATE_SCREENSHOT") == "1"
    else REPO / "var" / "deletes-approval.png"
)


def screenshot_the_question(api: ApiServer, run_id: str) -> str:
    """What a person sees in Required actions, as Chromium renders it (the text, and a screenshot)."""
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            task = f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/approve_deletes"
            page.goto(f"{api.url}{task}/required_actions")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORDS["admin"])
            page.click("button[type=submit]")
            page.get_by_text("Approve", exact=True).first.wait_for()
            page.wait_for_timeout(1500)  # the body's Markdown renders after the buttons
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            return page.inner_text("body")
        finally:
            browser.close()


def run_and_answer(
    api: ApiServer, conf: dict, option: str, *, warehouse_path=None, screenshot: bool = False
) -> dict:
    earlier = {run["dag_run_id"] for run in running_runs(api)}
    runner = subprocess.Popen(
        dags_test_command(conf),
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        run_id, question = wait_for_the_question(api, runner, earlier)
        if warehouse_path is not None:  # the page lists the question while it waits
            [pending] = monitored_deletions(warehouse_path).pending
            assert (pending.run_id, pending.customers, pending.invoices) == (run_id, 1, 1)
        if screenshot:
            shown = screenshot_the_question(api, run_id)
            assert "delete 1 customer(s) and 1 invoice(s)" in shown
        answer(api, run_id, option)
        output, _ = runner.communicate(timeout=300)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 0, output[-4000:]
    return question


def test_above_the_ratio_a_person_approves_in_required_actions_and_the_deletes_happen(
    synced, sandbox, api_server
):
    question = run_and_answer(api_server, MIRROR, "Approve", warehouse_path=synced, screenshot=True)

    assert question["options"] == ["Approve", "Reject"]
    assert "1 customer(s)" in question["subject"] and "1 invoice(s)" in question["subject"]
    assert "`L2`" in question["body"] and "`T3`" in question["body"]
    assert customers_and_invoices(sandbox) == ({"L1", "L3", "L4"}, {"T1"})
    run = last_run(synced)
    assert (run["outcome"], run["leads_deleted"], run["trials_deleted"]) == ("success_with_rejects", 1, 2)
    shown = monitored_deletions(synced)
    assert shown.pending == ()
    assert [(q.decision, q.answered_by) for q in shown.answered] == [("approved", "admin")]
    assert sorted((x.entity, x.external_id, x.reason) for x in shown.recent) == [
        ("lead", "L2", "mirror"),
        ("trial", "T2", "mirror"),
        ("trial", "T3", "mirror"),
    ]


def test_above_the_ratio_a_person_rejects_and_nothing_is_deleted(synced, sandbox, api_server):
    run_and_answer(api_server, MIRROR, "Reject")

    assert customers_and_invoices(sandbox) == ({"L1", "L2", "L3", "L4"}, {"T1", "T2", "T3"})
    run = last_run(synced)
    assert (run["leads_deleted"], run["trials_deleted"]) == (0, 0)
    assert "mirror deletes rejected by admin" in run["message"]
    assert deletions(synced) == []


def test_an_empty_leads_extract_asks_even_within_the_ratio_and_a_reject_keeps_everything(
    synced, sandbox, warehouse_path, api_server
):
    sql(warehouse_path, "DELETE FROM leads")  # a WHERE that returns nothing

    question = run_and_answer(api_server, {**MIRROR, "max_delete_ratio": 1.0}, "Reject")

    assert "the leads extract returned no row" in question["body"]
    assert customers_and_invoices(sandbox)[0] == {"L1", "L2", "L3", "L4"}


# ---- kill -9 in the middle of the deletes --------------------------------------------------------


def test_a_kill_during_the_deletes_then_a_rerun_ends_exact_and_deletes_nothing_outside_the_plan(
    airflow_db, connections, sandbox, warehouse_path
):
    leads = [
        (f"K{n:02d}", f"Kill Co {n}", None, None, None, None, None, None, None, "2025-04-01 00:00")
        for n in range(30)
    ]
    sql(warehouse_path, "DELETE FROM trials")
    for row in leads:
        sql(warehouse_path, "INSERT INTO leads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", *row)
    dags_test(dict(FULL_REFRESH_CONF))
    gone = {f"K{n:02d}" for n in range(20)}
    sql(warehouse_path, "DELETE FROM leads WHERE lead_id LIKE 'K0%' OR lead_id LIKE 'K1%'")
    sandbox.set_faults(Faults(latency_seconds=0.4))  # slow enough to be killed mid-way

    runner = subprocess.Popen(
        dags_test_command({**MIRROR, "approve_deletes": True}),
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while sum(1 for r in sandbox.requests if r.method == "DELETE" and r.applied) < 5:
            assert runner.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
            time.sleep(0.05)
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    killed_after = {r.path for r in sandbox.requests if r.method == "DELETE" and r.applied}
    assert 5 <= len(killed_after) < len(gone)
    # Between the kill and the rerun, one gone lead comes back: it is no longer gone, so it stays.
    sql(
        warehouse_path,
        "INSERT INTO leads VALUES ('K19', 'Back Co', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2025-04-02')",
    )
    sandbox.set_faults(Faults())

    dags_test({**MIRROR, "approve_deletes": True})

    # Exact: every lead still gone is deleted, the one back and the ten present are there.
    customers, _ = customers_and_invoices(sandbox)
    assert customers == {f"K{n:02d}" for n in range(19, 30)} | {"L1", "L2", "L3", "L4"}
    deleted = [row[1] for row in deletions(warehouse_path) if row[0] == "lead"]
    assert len(deleted) == len(set(deleted))  # each delete recorded once, killed attempt included
    assert set(deleted) - {"K19"} == gone - {"K19"}
    deletes = [r for r in sandbox.requests if r.method == "DELETE"]
    assert all(r.status in (204, 404, None) for r in deletes)
    assert sql(
        warehouse_path, "SELECT count(*) FROM mogulflow_created WHERE external_id IN ('K00', 'K05')"
    ) == [(0,)]
    run = last_run(warehouse_path)
    assert run["outcome"] == "success_with_rejects", run["message"]


# ---- erasure -----------------------------------------------------------------------------------


def test_an_incremental_run_erases_a_lead_and_no_mogulflow_table_keeps_a_trace(
    airflow_db, connections, sandbox, warehouse_path
):
    dags_test(dict(FULL_REFRESH_CONF))
    dags_test({**FULL_REFRESH_CONF, "dry_run": True})  # its details name L1 among the unchanged
    add_erasure(warehouse_path, "L1")

    window = {"full_refresh": False, "start": "2025-06-01T00:00:00Z", "end": "2025-06-02T00:00:00Z"}
    dags_test({**FULL_REFRESH_CONF, **window})

    customers, invoices = customers_and_invoices(sandbox)
    assert "L1" not in customers and "T1" not in invoices
    assert last_run(warehouse_path)["leads_deleted"] == 1
    personal = re.compile(
        r"(?<![A-Za-z0-9])(L1|T1|T5)(?![0-9])|ops@acme\.example|Acme GmbH|Acme \(old name\)"
    )
    assert [cell for cell in text_cells(warehouse_path) if personal.search(cell[2])] == []
    assert sql(warehouse_path, "SELECT lead_hash, outcome FROM mogulflow_erasures") == [
        (erased_id("L1"), "erased")
    ]
