"""mogulflow as a package people install: the wheel declares what its DAGs import, carries its
license and its provider entry point, and works in an Airflow environment that has nothing else.

The slow test builds the wheel (sdist first, then the wheel from the sdist, as `uv build` does),
installs it into a fresh venv beside only `apache-airflow==3.3.2` (the resolver picks the newest
versions inside the declared ranges, not the pins of requirements.txt), and imports the hook and
every DAG file there, away from this checkout.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from repo_paths import REPO

UV = Path(sys.executable).with_name("uv")
AIRFLOW_PIN = "apache-airflow==3.3.2"
DAG_IDS = ["chartmogul_leads_trials", "chartmogul_merge_converted_leads", "chartmogul_reconcile"]

# Run inside the clean venv: nothing of this checkout is on its path.
PROBE = """
import json, sys
import mogulflow
from airflow.dag_processing.dagbag import DagBag
from airflow.providers_manager import ProvidersManager
from mogulflow.airflow.hook import ChartMogulHook

bag = DagBag(dag_folder=sys.argv[1])
manager = ProvidersManager()
print("PROBE " + json.dumps({
    "mogulflow": mogulflow.__file__,
    "hook": f"{ChartMogulHook.__module__}.{ChartMogulHook.__qualname__}",
    "dags": sorted(bag.dags),
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "providers": sorted(manager.providers),
    "chartmogul_hook": getattr(manager.hooks.get("chartmogul"), "hook_class_name", None),
}))
"""


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt is the lock: {line!r} must be pinned with =="
            pins[_name(name)] = version.strip()
    return pins


def test_runtime_dependencies_are_declared_as_ranges_that_hold_the_locked_versions():
    from packaging.requirements import Requirement

    project = _project()
    pins = _pins()
    declared = [Requirement(text) for text in project["dependencies"]]
    names = {_name(str(req)) for req in declared}
    # what the DAG files and the package import at run time
    for needed in (
        "apache-airflow",
        "apache-airflow-providers-common-sql",
        "apache-airflow-providers-duckdb",
        "apache-airflow-providers-postgres",
        "pandas",
        "pandera",
        "httpx",
        "duckdb",
        "pycountry",
        "email-validator",
    ):
        assert needed in names, f"{needed} is imported at run time but not in [project] dependencies"
    for req in declared:
        assert str(req.specifier), f"{req} has no version range"
        name = _name(req.name)
        assert name in pins, f"{name} is declared but not pinned in requirements.txt (the lock)"
        assert req.specifier.contains(pins[name]), f"the lock's {name}=={pins[name]} is outside {req}"
    # test-only tools stay out of the runtime dependencies
    test_tools = {"pytest", "pytest-timeout", "ruff", "import-linter", "chartmogul", "check-jsonschema"}
    assert not names & test_tools
    extra_names = {_name(text) for text in project["optional-dependencies"]["test"]}
    assert test_tools <= extra_names
    for extra in project["optional-dependencies"].values():
        for text in extra:
            req = Requirement(text)
            if _name(req.name) in pins and str(req.specifier):
                assert req.specifier.contains(pins[_name(req.name)]), f"the lock is outside {req}"


def test_license_is_apache_2_in_the_repository_and_the_metadata():
    project = _project()
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(UV), "build", "--quiet", "--out-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("mogulflow-*.whl")
    (sdist,) = out.glob("mogulflow-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.mark.slow
def test_wheel_carries_the_license_the_entry_point_and_the_dependencies(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert wheel.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    requires = email.message_from_string(metadata).get_all("Requires-Dist")
    runtime = {_name(r) for r in requires if "extra ==" not in r}
    assert runtime == {_name(r) for r in _project()["dependencies"]}
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = mogulflow.airflow.provider:get_provider_info" in entry_points
    assert "mogulflow/airflow/hook.py" in names
    assert "mogulflow_sandbox/__main__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "dags/"))]


@pytest.mark.slow
def test_wheel_in_a_clean_airflow_venv_imports_the_hook_and_every_dag(built, tmp_path):
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    install = subprocess.run(
        [str(UV), "pip", "install", "--python", str(python), AIRFLOW_PIN, str(built["wheel"])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    # a deployment's layout: its own dags folder with copies of the DAG files, SQL beside them
    dags = tmp_path / "dags"
    dags.mkdir()
    for dag_file in (REPO / "dags").glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    (tmp_path / "plugins").mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MOGULFLOW_SQL_DIR": str(REPO / "include" / "sql"),
        "MOGULFLOW_STAGING_DIR": str(tmp_path / "staging"),
    }
    for key in ("LANG", "LC_ALL", "TZ"):
        if key in os.environ:
            env[key] = os.environ[key]
    probe = subprocess.run(
        [str(python), "-c", PROBE, str(dags)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    line = next(x for x in probe.stdout.splitlines() if x.startswith("PROBE "))
    result = json.loads(line.removeprefix("PROBE "))

    assert Path(result["mogulflow"]).is_relative_to(venv), "mogulflow must come from the wheel"
    assert result["errors"] == {}
    assert result["dags"] == DAG_IDS
    assert result["hook"] == "mogulflow.airflow.hook.ChartMogulHook"
    assert "mogulflow" in result["providers"]
    assert result["chartmogul_hook"] == "mogulflow.airflow.hook.ChartMogulHook"

    # only Airflow and what the wheel declares: no test tools, no sample-data extras
    listed = subprocess.run(
        [str(UV), "pip", "list", "--format", "json", "--python", str(python)],
        check=True,
        capture_output=True,
        text=True,
    )
    installed = {_name(p["name"]) for p in json.loads(listed.stdout)}
    assert {"mogulflow", "apache-airflow", "pandera", "apache-airflow-providers-duckdb"} <= installed
    assert not installed & {"pytest", "ruff", "faker", "chartmogul", "check-jsonschema"}
