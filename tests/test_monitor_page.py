"""The monitoring page end to end: the real `airflow api-server` with this repository's plugins/
folder, a synced sample warehouse, and Debian's Chromium driven by Playwright through Airflow's
login form.

The server runs in its own AIRFLOW_HOME with SimpleAuthManager users `admin` and `outsider`; the
auth manager is SimpleAuthManager except that `outsider` may not read DAG runs (below), so the
same server shows 401 (anonymous), 403 (logged in, no access) and the page.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it off this machine's closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORDS = {"admin": "admin-password-e2e", "outsider": "outsider-password-e2e"}
OUTSIDER = "outsider"
# The test's screenshot goes to var/ (git-ignored); MOGULFLOW_UPDATE_SCREENSHOT=1 refreshes the README's copy.
SCREENSHOT = (
    REPO / "docs" / "monitoring.png"
    if os.environ.get("MOGULFLOW_UPDATE_SCREENSHOT") == "1"
    else REPO / "var" / "monitoring.png"
)
SINCE = "2025-01-01"
MERGE_DAG = "chartmogul_merge_converted_leads"
SERVER_START_TIMEOUT = 180.0


class RunsHiddenFromOutsider(SimpleAuthManager):
    """SimpleAuthManager, except that the user `outsider` may not read any DAG's runs (every
    SimpleAuthManager role may, so the 403 needs a user with less)."""

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):  # type: ignore[override]
        if user.get_name() == OUTSIDER and access_entity is DagAccessEntity.RUN:
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )


@dataclass(frozen=True)
class SyncedWarehouse:
    path: Path
    first_run: object  # the RunSummary of the full refresh
    stats: object  # the sample's SampleStats
    merge_run_id: str


@dataclass(frozen=True)
class Server:
    url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def synced_warehouse(tmp_path_factory) -> SyncedWarehouse:
    """The sample warehouse after a full sync against the sandbox, plus a recorded merge run."""
    from direct_sync import run_sync_directly, sandbox_client

    from mogulflow.values.entities import Entity, Window
    from mogulflow.values.run_summary import EntityCounts, RunOutcome, RunSummary
    from mogulflow.warehouse.connection import Warehouse
    from mogulflow.warehouse.run_records import record_run
    from mogulflow_demo.sample_warehouse import build_sample_warehouse
    from mogulflow_sandbox import SandboxServer

    path = tmp_path_factory.mktemp("monitor") / "warehouse.duckdb"
    stats = build_sample_warehouse(path, leads=1000)
    with SandboxServer(port=0) as sandbox, sandbox_client(sandbox.url) as client:
        first = run_sync_directly(path, client, run_id="manual__monitor_full_refresh", full_refresh=True)
    merge_run_id = "scheduled__2025-10-30T00:00:00+00:00"
    now = datetime.now(UTC)
    warehouse = Warehouse.open_duckdb(str(path))
    try:
        record_run(
            warehouse,
            RunSummary(
                run_id=merge_run_id,
                dag_id=MERGE_DAG,
                window=Window(datetime(2025, 10, 30, tzinfo=UTC), datetime(2025, 10, 31, tzinfo=UTC)),
                started_at=now,
                finished_at=now,
                dry_run=False,
                outcome=RunOutcome.FAILED,
                counts={
                    Entity.CONVERSION: EntityCounts(extracted=7, rejected=1, created=4, unchanged=1, failed=1)
                },
                message="1 conversion failed",
            ),
            details={},
            data_source=("Leads", None),
        )
    finally:
        warehouse.close()
    return SyncedWarehouse(path, first, stats, merge_run_id)


@pytest.fixture(scope="module")
def server(synced_warehouse: SyncedWarehouse, tmp_path_factory) -> Iterator[Server]:
    """The real Airflow API server on a free port, with the repository's plugins/ folder."""
    home = tmp_path_factory.mktemp("airflow_home")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__AUTH_MANAGER": f"{__name__}.RunsHiddenFromOutsider",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{OUTSIDER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "monitor-e2e-secret",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(
            {"conn_type": "duckdb", "host": str(synced_warehouse.path)}
        ),
        # the server imports this module by name for its auth manager
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "plugins")]),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    log = home / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [airflow, "api-server", "--port", str(port), "-H", "127.0.0.1", "-w", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole, workers included
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, log)
        yield Server(url, log)
    finally:
        _stop(process)


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(
        f"airflow api-server not healthy after {SERVER_START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}"
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _token(server: Server, username: str) -> str:
    response = httpx.post(
        f"{server.url}/auth/token", json={"username": username, "password": PASSWORDS[username]}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


PROTECTED = [
    "/mogulflow/",
    "/mogulflow/assets/chart.umd.min.js",
    "/mogulflow/rejects.csv",
    "/mogulflow/api/overview",
]


@pytest.mark.slow
def test_plugin_is_listed_by_the_api_server(server: Server):
    response = httpx.get(
        f"{server.url}/api/v2/plugins",
        headers={"Authorization": f"Bearer {_token(server, 'admin')}"},
        timeout=30,
    )

    plugin = next(p for p in response.json()["plugins"] if "mogulflow" in p["name"])
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/mogulflow"]
    views = {view["destination"]: view for view in plugin["external_views"]}
    assert (views["nav"]["url_route"], views["nav"]["category"]) == ("mogulflow", "browse")
    assert views["dag"]["href"] == "mogulflow/?dag_id={DAG_ID}"


@pytest.mark.slow
@pytest.mark.parametrize("path", PROTECTED)
def test_anonymous_requests_get_401(server: Server, path: str):
    response = httpx.get(f"{server.url}{path}", timeout=30)

    assert response.status_code == 401
    assert "mogulflow_rejects" not in response.text and "run_id" not in response.text


@pytest.mark.slow
@pytest.mark.parametrize("path", PROTECTED)
def test_a_user_without_access_to_dag_runs_gets_403(server: Server, path: str):
    headers = {"Authorization": f"Bearer {_token(server, OUTSIDER)}"}

    response = httpx.get(f"{server.url}{path}", headers=headers, timeout=30)

    assert response.status_code == 403
    assert "run_id" not in response.text


@pytest.mark.slow
def test_the_page_tells_a_browser_what_to_do_instead_of_showing_json(server: Server):
    html = {"Accept": "text/html"}
    anonymous = httpx.get(f"{server.url}/mogulflow/", headers=html, timeout=30)
    outsider = httpx.get(
        f"{server.url}/mogulflow/", headers=html, cookies={"_token": _token(server, OUTSIDER)}, timeout=30
    )

    assert anonymous.status_code == 401 and "Please log in" in anonymous.text
    assert outsider.status_code == 403 and "No access to mogulflow's runs" in outsider.text


@pytest.mark.slow
def test_static_file_paths_outside_the_asset_list_are_not_served(server: Server):
    headers = {"Authorization": f"Bearer {_token(server, 'admin')}"}

    for path in ("/mogulflow/assets/..%2Fapp.py", "/mogulflow/assets/app.py", "/mogulflow/openapi.json"):
        assert httpx.get(f"{server.url}{path}", headers=headers, timeout=30).status_code == 404


@pytest.mark.slow
def test_an_invalid_login_cookie_shows_please_log_in_again(server: Server):
    response = httpx.get(
        f"{server.url}/mogulflow/",
        headers={"Accept": "text/html"},
        cookies={"_token": "expired.or.forged"},
        timeout=30,
    )

    assert response.status_code in (401, 403)
    assert "Please log in again" in response.text
    assert "/auth/login?next=" in response.text


@pytest.mark.slow
def test_the_rejects_csv_holds_every_reject(server: Server, synced_warehouse: SyncedWarehouse):
    headers = {"Authorization": f"Bearer {_token(server, 'admin')}"}

    response = httpx.get(
        f"{server.url}/mogulflow/rejects.csv", params={"since": SINCE}, headers=headers, timeout=60
    )

    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0] == "run_id,dag_id,entity,source_id,reason,rejected_at"
    expected = sum(c.rejected for c in synced_warehouse.first_run.counts.values())
    assert len(lines) - 1 == expected


def _expected_funnel(path: Path, until: date) -> dict:
    """Leads and free/paid trials per week, counted again here with pandas from the source tables."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as connection:
        leads = connection.execute("SELECT * FROM leads WHERE lead_id IS NOT NULL").df()
        trials = connection.execute("SELECT * FROM trials WHERE trial_id IS NOT NULL").df()
    leads = leads.sort_values("updated_at").drop_duplicates("lead_id", keep="last")
    trials = trials.sort_values("updated_at").drop_duplicates("trial_id", keep="last")
    first_trial = trials.groupby("lead_id")["started_at"].min()
    lead_date = (
        leads["lead_created_at"]
        .fillna(leads["free_trial_started_at"])
        .fillna(leads["lead_id"].map(first_trial))
    )
    since, end = pd.Timestamp(SINCE), pd.Timestamp(until) + pd.Timedelta(days=1)

    def weekly(dates: pd.Series) -> dict[str, int]:
        dates = dates[(dates >= since) & (dates < end)]
        weeks = dates.dt.to_period("W-SUN").dt.start_time.dt.date.astype(str)
        return weeks.value_counts().to_dict()

    paid = trials["amount_in_cents"] > 0
    return {
        "leads": weekly(lead_date),
        "free_trials": weekly(trials.loc[~paid, "started_at"]),
        "paid_trials": weekly(trials.loc[paid, "started_at"]),
    }


@pytest.mark.slow
def test_the_page_in_the_airflow_ui_shows_runs_rejects_and_charts(
    server: Server, synced_warehouse: SyncedWarehouse
):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium (as root)"
    until = datetime.now(UTC).date()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2600})
            page.set_default_timeout(60_000)
            # Browse → mogulflow without a session: Airflow's login form, then back to the page.
            page.goto(f"{server.url}/plugin/mogulflow")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORDS["admin"])
            page.click("button[type=submit]")
            page.wait_for_url("**/plugin/mogulflow")
            frame = page.frame_locator("iframe")
            filters = frame.locator("form.filters")
            filters.locator("input[name=since]").fill(SINCE)
            filters.locator("input[name=until]").fill(until.isoformat())
            filters.locator("select[name=grain]").select_option("week")
            with page.expect_event("framenavigated", predicate=lambda f: "grain=week" in f.url) as navigated:
                filters.locator("button[type=submit]").click()
            inner = navigated.value
            inner.wait_for_load_state()
            inner.wait_for_function("() => window.Chart && Chart.getChart('chart-trial-mix')")

            _check_runs(inner, synced_warehouse)
            _check_rejects(inner, synced_warehouse)
            _check_charts(inner, synced_warehouse, until)
            assert "No reconciliation yet" in inner.locator("#reconciliation").inner_text()
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            _check_lookup(frame, page, synced_warehouse)
        finally:
            browser.close()


def _check_runs(inner, synced: SyncedWarehouse) -> None:
    full = inner.locator(f"tbody.run[data-run-id='{synced.first_run.run_id}']")
    assert full.locator("a.run-id").inner_text() == synced.first_run.run_id
    href = full.locator("a.run-id").get_attribute("href")
    assert href == f"/dags/chartmogul_leads_trials/runs/{synced.first_run.run_id}"
    for entity, counts in synced.first_run.counts.items():
        row = full.locator(f"tr[data-entity='{entity}']")
        for name in ("extracted", "created", "updated", "unchanged", "rejected", "failed"):
            assert int(row.locator(f"td[data-count='{name}']").inner_text()) == getattr(counts, name), (
                entity,
                name,
            )
    merge = inner.locator(f"tbody.run[data-run-id='{synced.merge_run_id}']")
    conversions = merge.locator("tr[data-entity='conversion']")
    assert [
        int(conversions.locator(f"td[data-count='{n}']").inner_text())
        for n in ("extracted", "created", "failed")
    ] == [
        7,
        4,
        1,
    ]


def _check_rejects(inner, synced: SyncedWarehouse) -> None:
    from mogulflow.values.entities import Entity

    total = sum(c.rejected for c in synced.first_run.counts.values())
    assert inner.locator("#rejects-total").inner_text().startswith(f"{total} rejected")
    for entity in (Entity.LEAD, Entity.PLAN, Entity.TRIAL):
        pill = inner.locator(f"#rejects .pill[data-entity='{entity}'] strong")
        assert int(pill.inner_text()) == synced.stats.rejected[entity]
        groups = inner.locator(f"tr.reject-group[data-entity='{entity}']")
        shown = {
            groups.nth(i).get_attribute("data-rule"): int(
                groups.nth(i).locator("td[data-count='rows']").inner_text()
            )
            for i in range(groups.count())
        }
        for label, expected in synced.stats.rule_failures[entity].items():
            matching = sum(n for rule, n in shown.items() if rule == label or rule.startswith(f"{label}:"))
            assert matching == expected, (entity, label, shown)
    assert inner.locator("#rejects-csv").get_attribute("href").startswith("/mogulflow/rejects.csv?")


def _check_charts(inner, synced: SyncedWarehouse, until: date) -> None:
    expected = _expected_funnel(synced.path, until)
    chart = inner.evaluate(
        """() => Object.fromEntries(['chart-leads', 'chart-trials', 'chart-conversion', 'chart-cycle',
             'chart-trial-mix'].map((id) => { const c = Chart.getChart(id);
             return [id, c && {labels: c.data.labels, data: c.data.datasets.map((d) => d.data)}]; }))"""
    )
    assert all(chart.values()), chart.keys()
    labels = chart["chart-leads"]["labels"]

    def series(counts: dict[str, int]) -> list[int]:
        return [counts.get(label, 0) for label in labels]

    assert chart["chart-leads"]["data"][0] == series(expected["leads"])
    free, paid = chart["chart-trials"]["data"]
    assert (free, paid) == (series(expected["free_trials"]), series(expected["paid_trials"]))
    assert chart["chart-trial-mix"]["data"][0] == [
        sum(expected["free_trials"].values()),
        sum(expected["paid_trials"].values()),
    ]
    assert int(inner.locator("#total-leads").inner_text()) == sum(expected["leads"].values())
    # The conversion and sales-cycle series are the page's own numbers (tested by hand in
    # test_monitor_queries): here, that the charts draw what the JSON of the same page says.
    overview = inner.evaluate(
        "async () => (await fetch('api/overview?' + new URLSearchParams(location.search))).json()"
    )
    buckets = overview["funnel"]["buckets"]
    conversion = [
        None if not b["trial_leads"] else round(100 * b["converted_trial_leads"] / b["trial_leads"], 1)
        for b in buckets
    ]
    cycle = [
        None if not b["conversions"] else round(b["cycle_days_total"] / b["conversions"], 1) for b in buckets
    ]
    assert chart["chart-conversion"]["data"][0] == conversion
    assert chart["chart-cycle"]["data"][0] == cycle
    assert sum(b["conversions"] for b in buckets) > 0 and any(v for v in conversion)


def _check_lookup(frame, page, synced: SyncedWarehouse) -> None:
    import duckdb

    with duckdb.connect(str(synced.path), read_only=True) as connection:
        rejected_lead = connection.execute(
            "SELECT source_id FROM mogulflow_rejects WHERE entity = 'lead' AND reason LIKE 'email:%' LIMIT 1"
        ).fetchone()[0]
    frame.locator("#lookup input[name=lookup]").fill(rejected_lead)
    frame.locator("#lookup button[type=submit]").click()
    result = frame.locator("#lookup-result")
    result.wait_for()
    runs = frame.locator("#lookup-runs")
    assert synced.first_run.run_id in runs.inner_text()
    assert "rejected" in runs.inner_text() and "email: must be a valid email address" in runs.inner_text()
