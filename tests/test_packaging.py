"""mogulflow as a package people install: ranges in the wheel, an exact generated lock for this
repository, the SQL and the plugin inside the wheel, the DAG files in their thin form.

The wheel in a real Airflow 3.1 and 3.3 is tests/test_wheel_install.py.
"""

from __future__ import annotations

import ast
import email
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from repo_paths import REPO

UV = Path(sys.executable).with_name("uv")
TEST_TOOLS = {
    "pytest",
    "pytest-timeout",
    "ruff",
    "import-linter",
    "chartmogul",
    "check-jsonschema",
    "playwright",
}
LOCK_FIRST_LINE = "# The lock: the exact versions of this repository's own .venv (make), CI and Docker image"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


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


def test_runtime_dependencies_are_ranges_that_hold_the_locked_versions():
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    pins = _pins()
    declared = [Requirement(text) for text in project["dependencies"]]
    names = {_name(req.name) for req in declared}
    for needed in (
        "apache-airflow",
        "apache-airflow-providers-common-sql",
        "pandas",
        "numpy",
        "pandera",
        "httpx",
    ):
        assert needed in names, f"{needed} is imported at run time but not in [project] dependencies"
    extras = project["optional-dependencies"]
    for req in declared + [Requirement(t) for extra in extras.values() for t in extra]:
        if req.name == "mogulflow":
            continue
        assert str(req.specifier), f"{req} has no version range"
        assert not [s for s in req.specifier if s.operator in ("==", "===")], f"{req} is an exact pin"
        name = _name(req.name)
        assert name in pins, f"{name} is declared but not in requirements.txt (the lock)"
        assert req.specifier.contains(pins[name]), f"the lock's {name}=={pins[name]} is outside {req}"
    # the warehouses, the sandbox, Slack and Celery are extras, not requirements
    assert {"duckdb", "postgres", "sandbox", "slack", "celery"} == set(extras)
    assert not names & {
        "apache-airflow-providers-duckdb",
        "apache-airflow-providers-postgres",
        "faker",
        "uvicorn",
    }
    # test tools live in the dev dependency group (PEP 735), which the wheel does not carry
    every_extra = {_name(t) for extra in extras.values() for t in extra}
    assert not (names | every_extra) & TEST_TOOLS
    assert {_name(t) for t in _pyproject()["dependency-groups"]["dev"]} >= TEST_TOOLS


def test_the_lock_says_what_it_is_and_is_what_uv_generates_from_pyproject(tmp_path):
    lock = (REPO / "requirements.txt").read_text()
    assert lock.startswith(LOCK_FIRST_LINE)
    # Regenerate with the same command as `make lock`, preferring the current pins (uv keeps the
    # versions of an existing output file unless they conflict): any difference is a hand edit or a
    # pyproject.toml change that `make lock` was not run for.
    regenerated = tmp_path / "requirements.txt"
    regenerated.write_text(lock)
    makefile = (REPO / "Makefile").read_text()
    assert "--python-version 3.11 --all-extras --group dev --no-header" in makefile
    result = subprocess.run(
        [
            str(UV),
            *("pip", "compile", "--quiet", "--python-version", "3.11", "--all-extras", "--group", "dev"),
            *("--no-header", str(REPO / "pyproject.toml"), "-o", str(regenerated)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    body = [line for line in lock.splitlines() if not line.startswith("# ")]
    assert regenerated.read_text().splitlines() == body, "requirements.txt is stale: run `make lock`"


def test_license_is_apache_2_in_the_repository_and_the_metadata():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_repository_dags_are_the_thin_files_mogulflow_dags_writes():
    from mogulflow.airflow.dag_files import DAG_FILES

    on_disk = {p.name: p.read_text() for p in (REPO / "dags").glob("*.py")}
    assert on_disk == DAG_FILES
    for content in DAG_FILES.values():
        # a docstring, one import of the package's DAG function, one call: nothing to go stale
        body = ast.parse(content).body
        assert [type(node) for node in body] == [ast.Expr, ast.ImportFrom, ast.Assign], content
        assert body[1].module == "mogulflow.airflow.dags"


def test_one_copy_of_the_sql_in_the_package():
    from mogulflow.warehouse.sql_files import DEFAULT_SQL_DIR, default_sql_files

    assert DEFAULT_SQL_DIR == REPO / "plugins" / "mogulflow" / "sql"
    names = {p.name for p in default_sql_files()}
    assert {"extract_leads.sql", "extract_plans.sql", "extract_trials.sql", "mogulflow_tables.sql"} <= names
    tracked = subprocess.run(
        ["git", "ls-files", "*.sql"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked and all(path.startswith("plugins/mogulflow/sql/") for path in tracked), tracked


def test_a_user_folder_overrides_the_sql_file_by_file(tmp_path, monkeypatch):
    from mogulflow.warehouse.sql_files import DEFAULT_SQL_DIR, SQL_DIR_ENV, read_sql, sql_path

    (tmp_path / "extract_leads.sql").write_text("SELECT 1 AS mine")
    (tmp_path / "snowflake").mkdir()
    (tmp_path / "snowflake" / "extract_plans.sql").write_text("SELECT 2 AS mine")
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    assert read_sql("extract_leads.sql") == "SELECT 1 AS mine"
    assert read_sql("extract_leads.sql", "snowflake") == "SELECT 1 AS mine"  # the user's wins
    assert read_sql("extract_plans.sql", "snowflake") == "SELECT 2 AS mine"
    assert sql_path("extract_trials.sql") == DEFAULT_SQL_DIR / "extract_trials.sql"  # not overridden
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_sql("extract_leads.sql")


def test_the_repository_plugin_file_stands_aside_when_the_package_is_installed():
    """plugins/mogulflow_monitor.py defines no plugin while the installed mogulflow has the entry point."""
    import runpy

    namespace = runpy.run_path(str(REPO / "plugins" / "mogulflow_monitor.py"))
    assert "MogulflowMonitorPlugin" not in namespace
    assert namespace["_installed_entry_point"]() is True


@pytest.mark.slow
def test_the_wheel_carries_the_sql_the_plugin_the_dags_and_the_entry_points():
    subprocess.run(
        ["make", "--no-print-directory", "dist"], cwd=REPO, check=True, capture_output=True, timeout=600
    )
    [wheel] = (REPO / "dist").glob("mogulflow-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        assert archive.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
    for sql in (REPO / "plugins" / "mogulflow" / "sql").rglob("*.sql"):
        assert f"mogulflow/sql/{sql.relative_to(REPO / 'plugins' / 'mogulflow' / 'sql')}" in names
    for module in (
        "mogulflow/monitor/plugin.py",
        "mogulflow/airflow/dags/leads_trials.py",
        "mogulflow/cli/dags.py",
    ):
        assert module in names
    assert "mogulflow/monitor/static/chart.umd.min.js" in names
    assert "mogulflow_sandbox/__main__.py" in names
    assert not [
        n for n in names if "__pycache__" in n or n.startswith(("tests/", "dags/", "mogulflow_monitor"))
    ]
    assert (
        "[airflow.plugins]\nmogulflow_monitor = mogulflow.monitor.plugin:MogulflowMonitorPlugin"
        in entry_points
    )
    assert "provider_info = mogulflow.airflow.provider:get_provider_info" in entry_points
    assert "[console_scripts]\nmogulflow = mogulflow.cli:main" in entry_points
    assert "License-Expression: Apache-2.0" in metadata
    requires = email.message_from_string(metadata).get_all("Requires-Dist")
    runtime = {_name(r) for r in requires if "extra ==" not in r}
    assert runtime == {_name(r) for r in _pyproject()["project"]["dependencies"]}
