"""The wheel in the Airflow a data team already runs, on the oldest and the newest supported series.

For Airflow 3.1.x and 3.3.x (the newest release of each series, resolved from the index as a user
would: `apache-airflow>=3.1,<3.2`), in a fresh venv holding only Airflow (and once more for 3.1 with
pandas 2.2.3 beside it, as the platforms of Airflow 3.1's time ship it):

1. `make dist` builds dist/mogulflow-<version>-py3-none-any.whl; `pip install` puts it in with its
   `sandbox` extra (the local ChartMogul sandbox, the sample warehouse, the DuckDB warehouse). The
   Airflow version is the same afterwards, and the wheel's metadata holds no exact pin and no test tool.
2. `mogulflow dags --into DAGS` writes the DAG files; `mogulflow sample-warehouse` builds a DuckDB
   warehouse; `mogulflow sandbox` serves the ChartMogul API; the connections are `AIRFLOW_CONN_*`.
3. A real api-server, scheduler and dag-processor (LocalExecutor, SQLite) run from that venv, with a
   temporary AIRFLOW_HOME, the written DAGs folder, an empty plugins folder and the temporary
   folder as their working directory: no file of this repository is on any path.
4. A full sync of `chartmogul_leads_trials` is triggered through the REST API; the sandbox then
   holds exactly the sample's valid leads, plans and trials, each once.
5. Debian's Chromium (Playwright) logs in through Airflow's form and sees that run on the
   monitoring page; `airflow plugins` and `airflow providers list` name mogulflow.

Nothing is skipped: a missing tool (uv, chromium, the network to the index) fails with its reason.
Downloads come from uv's and pip's caches after the first run. Each deployment takes about 1.3
minutes on this project's 2-core machine (the three: about 4 minutes).
"""

from __future__ import annotations

import email
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from repo_paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

UV = Path(sys.executable).with_name("uv")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# Each deployment: what its venv holds before the wheel. "3.1-pandas2" is Airflow 3.1 as the platforms
# of its time ship it, with pandas 2 (Airflow's providers ask pandas>=2.1.2): the wheel must keep it.
SERIES = {
    "3.1": ["apache-airflow>=3.1,<3.2"],
    "3.1-pandas2": ["apache-airflow>=3.1,<3.2", "pandas==2.2.3", "numpy==2.0.2"],
    "3.3": ["apache-airflow>=3.3,<3.4"],
}
KEPT = {"3.1-pandas2": {"pandas": "2.2.3", "numpy": "2.0.2"}}
DAG_IDS = ["chartmogul_leads_trials", "chartmogul_merge_converted_leads", "chartmogul_reconcile"]
SAMPLE_LEADS = 1000
API_KEY = "wheel-test-key-0123456789"
READY_TIMEOUT = 300.0
RUN_TIMEOUT = 600.0
TEST_TOOLS = {
    "pytest",
    "pytest-timeout",
    "ruff",
    "import-linter",
    "playwright",
    "check-jsonschema",
    "chartmogul",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(argv: list[str], *, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="session")
def wheel() -> Path:
    """`make dist`'s wheel (built once per session)."""
    assert UV.exists(), f"{UV} is missing: `make` installs uv into .venv"
    _run(["make", "--no-print-directory", "dist"], cwd=REPO, timeout=600)
    wheels = sorted((REPO / "dist").glob("mogulflow-*-py3-none-any.whl"))
    assert len(wheels) == 1, f"make dist should build one wheel, found {wheels}"
    return wheels[0]


def test_the_wheel_declares_ranges_and_no_test_tool(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        [metadata_name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_string(archive.read(metadata_name).decode())
    from packaging.requirements import Requirement

    requires = [Requirement(text) for text in metadata.get_all("Requires-Dist")]
    assert requires
    for requirement in requires:
        exact = [s for s in requirement.specifier if s.operator in ("==", "===")]
        assert not exact, f"exact pin in the wheel: {requirement}"
        assert requirement.name.lower() not in TEST_TOOLS, f"test tool in the requirements: {requirement}"
    assert set(metadata.get_all("Provides-Extra")) == {"duckdb", "postgres", "sandbox", "celery", "slack"}


# ---- one deployment per Airflow series ---------------------------------------------------------


@dataclass
class Deployment:
    series: str
    root: Path
    venv: Path
    env: dict[str, str]
    api_url: str
    password: str
    airflow_before: str
    airflow_after: str
    expected: dict[str, int]
    sandbox_state: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    run_id: str = ""
    run_state: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def cli(self, *argv: str, timeout: float = 300) -> str:
        return _run([self.bin(argv[0]), *argv[1:]], env=self.env, cwd=self.root, timeout=timeout).stdout

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tails(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-2000:]}" for name in self.processes)

    def token(self) -> str:
        answer = httpx.post(
            f"{self.api_url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["access_token"]

    def api(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
        answer = httpx.request(
            method,
            f"{self.api_url}{path}",
            headers={"Authorization": f"Bearer {self.token()}", **(headers or {})},
            timeout=60,
            **kwargs,
        )
        assert answer.status_code < 400, f"{method} {path}: {answer.status_code} {answer.text[:500]}"
        return answer


def _launch(deployment: Deployment, name: str, argv: list[str]) -> subprocess.Popen:
    logs = deployment.root / "logs"
    logs.mkdir(exist_ok=True)
    with (logs / f"{name}.log").open("ab") as out:
        process = subprocess.Popen(
            argv,
            env=deployment.env,
            cwd=deployment.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole
        )
    deployment.processes[name] = process
    return process


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 45
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _install(root: Path, series: str, wheel: Path) -> tuple[Path, str, str, float, float]:
    """A fresh venv with only Airflow of `series`, then the wheel with pip; both Airflow versions."""
    venv = root / "venv"
    python = venv / "bin" / "python"
    started = time.monotonic()
    # --seed: a current pip in the venv (the wheel goes in with pip, as the README says)
    _run([str(UV), "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)])
    _run([str(UV), "pip", "install", "--quiet", "--python", str(python), *SERIES[series]], timeout=900)
    airflow_only = time.monotonic() - started
    version = [str(python), "-c", "from importlib.metadata import version; print(version('apache-airflow'))"]
    before = _run(version).stdout.strip()
    started = time.monotonic()
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[sandbox]"],
        timeout=900,
    )
    wheel_install = time.monotonic() - started
    after = _run(version).stdout.strip()
    return venv, before, after, airflow_only, wheel_install


@pytest.fixture(scope="module", params=sorted(SERIES), ids=lambda s: f"airflow-{s}")
def deployment(request, wheel: Path, tmp_path_factory) -> Iterator[Deployment]:
    series = request.param
    root = tmp_path_factory.mktemp(f"airflow-{series}")
    venv, before, after, airflow_only, wheel_install = _install(root, series, wheel)
    home, dags, plugins = root / "home", root / "dags", root / "plugins"
    for folder in (home, plugins):
        folder.mkdir()
    port = _free_port()
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(64),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the run the test triggers
        "MOGULFLOW_TASK_RETRIES": "0",
    }
    deployment = Deployment(
        series,
        root,
        venv,
        env,
        f"http://127.0.0.1:{port}",
        password,
        before,
        after,
        {},
        root / "sandbox.json",
    )
    deployment.timings.update(airflow_only_install=airflow_only, wheel_install=wheel_install)
    try:
        deployment.cli("mogulflow", "dags", "--into", str(dags))
        summary = deployment.cli(
            "mogulflow", "sample-warehouse", str(root / "warehouse.duckdb"), "--leads", str(SAMPLE_LEADS)
        )
        for table, key in (("leads", "customers"), ("plans", "plans"), ("trials", "invoices")):
            rows, rejected = re.search(
                rf"{table}\s+([\d,]+) rows,\s+([\d,]+) to be rejected", summary
            ).groups()
            deployment.expected[key] = int(rows.replace(",", "")) - int(rejected.replace(",", ""))
        sandbox = _launch(
            deployment,
            "sandbox",
            [
                deployment.bin("mogulflow"),
                *(
                    "sandbox",
                    "--port",
                    "0",
                    "--api-key",
                    API_KEY,
                    "--state-file",
                    str(deployment.sandbox_state),
                ),
            ],
        )
        sandbox_url = _wait_for_sandbox(deployment, sandbox)
        env["AIRFLOW_CONN_CHARTMOGUL_DEFAULT"] = json.dumps(
            {
                "conn_type": "chartmogul",
                "host": sandbox_url,
                "password": API_KEY,
                "extra": {"requests_per_second": 100},
            }
        )
        env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps(
            {"conn_type": "duckdb", "host": str(root / "warehouse.duckdb")}
        )
        started = time.monotonic()
        deployment.cli("airflow", "db", "migrate", timeout=600)
        for name in ("api-server", "scheduler", "dag-processor"):
            _launch(deployment, name, [deployment.bin("airflow"), name])
        _wait_until_ready(deployment)
        deployment.timings["airflow_ready"] = time.monotonic() - started
        yield deployment
    finally:
        _stop(deployment.processes)
        print(
            f"\nairflow {series} ({deployment.airflow_after}) timings (s): "
            f"{ {k: round(v, 1) for k, v in deployment.timings.items()} }"
        )


def _wait_for_sandbox(deployment: Deployment, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", deployment.log("sandbox"))
        if found:
            return found.group(1)
        assert process.poll() is None, f"mogulflow sandbox exited:\n{deployment.log('sandbox')}"
        time.sleep(0.2)
    raise AssertionError(f"mogulflow sandbox did not start:\n{deployment.log('sandbox')}")


def _wait_until_ready(deployment: Deployment) -> None:
    """Health of the metadata DB, scheduler and dag-processor; all three DAGs parsed."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        for name, process in deployment.processes.items():
            assert process.poll() is None, f"{name} exited:\n{deployment.log(name)[-4000:]}"
        try:
            health = httpx.get(f"{deployment.api_url}/api/v2/monitor/health", timeout=5).json()
            healthy = all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            )
            if healthy and all(
                deployment.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200 for dag_id in DAG_IDS
            ):
                return
        except (httpx.HTTPError, ValueError, AssertionError):
            pass
        assert time.monotonic() < deadline, (
            f"Airflow not ready after {READY_TIMEOUT:.0f} s:\n{deployment.tails()}"
        )
        time.sleep(1)


@pytest.fixture(scope="module")
def synced(deployment: Deployment) -> Deployment:
    """One full sync of chartmogul_leads_trials, triggered over REST and run by the scheduler."""
    started = time.monotonic()
    deployment.api(
        "POST",
        "/api/v2/pools",
        json={"name": "chartmogul_api", "slots": 1, "description": "mogulflow", "include_deferred": False},
    )
    dag_id = "chartmogul_leads_trials"
    deployment.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    run = deployment.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {"full_refresh": True}}
    ).json()
    deployment.run_id = run["dag_run_id"]
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(deployment.run_id, safe='')}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while (state := deployment.api("GET", path).json()["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, (
            f"run still {state} after {RUN_TIMEOUT:.0f} s:\n{deployment.tails()}"
        )
        time.sleep(2)
    deployment.run_state = state
    deployment.timings["sync"] = time.monotonic() - started
    if state != "success":
        tasks = deployment.api("GET", f"{path}/taskInstances").json()["task_instances"]
        failed = [t["task_id"] for t in tasks if t["state"] != "success"]
        logs = "\n".join(
            deployment.api(
                "GET", f"{path}/taskInstances/{task}/logs/1", headers={"Accept": "text/plain"}
            ).text[-3000:]
            for task in failed[:2]
        )
        pytest.fail(f"the sync ended {state}; tasks not successful: {failed}\n{logs}")
    return deployment


def test_installing_the_wheel_keeps_the_airflow_version(deployment: Deployment):
    assert deployment.airflow_before.startswith(f"{deployment.series.split('-')[0]}.")
    assert deployment.airflow_after == deployment.airflow_before
    listed = subprocess.run(
        [deployment.bin("python"), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True
    )
    versions = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    installed = set(versions)
    assert "mogulflow" in installed
    for name, version in KEPT.get(deployment.series, {}).items():
        assert versions[name] == version, f"installing the wheel changed {name} {version} → {versions[name]}"
    assert not installed & TEST_TOOLS, installed & TEST_TOOLS


def test_a_real_scheduler_syncs_the_sandbox_exactly(synced: Deployment):
    from mogulflow_sandbox.persistence import load_state_file
    from mogulflow_sandbox.state import SandboxState

    assert synced.run_state == "success"
    _stop({"sandbox": synced.processes.pop("sandbox")})  # SIGTERM: the sandbox writes its state file
    state = SandboxState()
    assert load_state_file(synced.sandbox_state, state), f"no state file:\n{synced.log('sandbox')}"
    data_source = state.data_source_by_name("Leads")
    assert data_source, "the run created no data source 'Leads'"

    def distinct(objects: list[dict]) -> int:
        ids = [o["external_id"] for o in objects]
        assert len(ids) == len(set(ids)), "an object was created twice"
        return len(ids)

    uuid = data_source["uuid"]
    found = {
        "customers": distinct(state.customers(uuid)),
        "plans": distinct(state.plans(uuid)),
        "invoices": distinct(state.invoices(data_source_uuid=uuid)),
    }
    assert found == synced.expected


def test_the_monitoring_page_shows_the_run(synced: Deployment):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium (as root)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(60_000)
            page.goto(f"{synced.api_url}/plugin/mogulflow")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", synced.password)
            page.click("button[type=submit]")
            page.wait_for_url("**/plugin/mogulflow")
            run = page.frame_locator("iframe").locator(f"tbody.run[data-run-id='{synced.run_id}']")
            assert run.locator("a.run-id").inner_text() == synced.run_id
            created = int(run.locator("tr[data-entity='lead'] td[data-count='created']").inner_text())
            assert created == synced.expected["customers"]
            page.screenshot(path=str(synced.root / "monitoring.png"))
        finally:
            browser.close()


def test_airflow_plugins_and_providers_list_show_mogulflow(deployment: Deployment):
    plugins = json.loads(deployment.cli("airflow", "plugins", "--output", "json"))
    [plugin] = [p for p in plugins if "mogulflow" in p["name"]]
    assert "EntryPoint" in str(plugin.get("source")), plugin.get("source")  # from the wheel, not a folder
    providers = json.loads(deployment.cli("airflow", "providers", "list", "--output", "json"))
    assert "mogulflow" in {p["package_name"] for p in providers}
    answer = deployment.api("GET", "/api/v2/plugins").json()
    assert [p["name"] for p in answer["plugins"]].count("mogulflow_monitor") == 1
    assert not [
        e for e in deployment.api("GET", "/api/v2/plugins/importErrors").json().get("import_errors", [])
    ]
