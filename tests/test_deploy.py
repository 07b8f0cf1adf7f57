"""The deployment recipes of deploy/, checked as far as a machine without Docker, Helm, Astro or AWS allows.

- Astro (deploy/astro): requirements.txt and packages.txt in the formats the Runtime's build reads
  (pip's requirements format; one Debian package per line), a Dockerfile on an Airflow 3 Runtime that
  installs the wheel with Airflow held, the thin DAG files, airflow_settings.yaml with the pool and
  connections of the right types.
- MWAA (deploy/mwaa): build.sh really builds dags/, plugins.zip and requirements.txt; the
  requirements, with plugins.zip unpacked where MWAA unpacks it, resolve (uv) with Airflow held at
  the environment's version.
- Helm (deploy/helm): the values file selects the KubernetesExecutor, the mogulflow image, no DAG
  volume, the connections from a Secret, a triggerer. Validated against the official chart's
  values.schema.json when one is given (`MOGULFLOW_HELM_SCHEMA=path`; deploy/README.md records the
  run against chart 1.18's schema); `helm template` needs helm and the chart, neither of which is here.
- docker-compose.yaml: tests/test_compose.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from repo_paths import REPO

DEPLOY = REPO / "deploy"
UV = Path(sys.executable).with_name("uv")


def _requirement_lines(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


# ---- Astro ---------------------------------------------------------------------------------------


def test_astro_requirements_and_packages_are_in_the_formats_the_runtime_reads():
    from packaging.requirements import Requirement

    for line in _requirement_lines(DEPLOY / "astro" / "requirements.txt"):
        if not line.startswith("-"):
            Requirement(line)  # raises on anything pip would refuse
    for line in _requirement_lines(DEPLOY / "astro" / "packages.txt"):
        assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", line), f"not a Debian package name: {line!r}"


def test_astro_dockerfile_installs_the_wheel_on_an_airflow_3_runtime_without_touching_airflow():
    text = (DEPLOY / "astro" / "Dockerfile").read_text()
    [image] = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    runtime = re.fullmatch(r"astrocrpublic\.azurecr\.io/runtime:(\d+)\.(\d+)-\d+", image)
    assert runtime and (int(runtime[1]), int(runtime[2])) >= (3, 1), image
    assert "include/wheels/mogulflow-*-py3-none-any.whl" in text
    assert '"apache-airflow==$(python -c' in text  # Airflow held at the Runtime's version
    assert (DEPLOY / "astro" / "include" / "wheels").is_dir()


def test_astro_project_has_the_thin_dags_and_local_settings():
    from mogulflow.airflow.dag_files import DAG_FILES
    from mogulflow.airflow.provider import get_provider_info

    dags = {p.name: p.read_text() for p in (DEPLOY / "astro" / "dags").glob("*.py")}
    assert dags == DAG_FILES
    settings = yaml.safe_load((DEPLOY / "astro" / "airflow_settings.yaml").read_text())["airflow"]
    assert {"pool_name": "chartmogul_api", "pool_slot": 1}.items() <= settings["pools"][0].items()
    types = {c["conn_id"]: c["conn_type"] for c in settings["connections"]}
    assert types["chartmogul_default"] in {
        t["connection-type"] for t in get_provider_info()["connection-types"]
    }
    assert types["warehouse_default"] == "postgres"


# ---- MWAA ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mwaa_build_gives_dags_plugins_zip_and_requirements_that_resolve_with_airflow_held(tmp_path):
    out = tmp_path / "mwaa"
    env = {**os.environ, "MWAA_OUT": str(out), "AIRFLOW_VERSION": "3.1.8"}
    build = subprocess.run(
        ["bash", str(DEPLOY / "mwaa" / "build.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    assert sorted(p.name for p in (out / "dags").iterdir()) == [
        "chartmogul_leads_trials.py",
        "chartmogul_merge_converted_leads.py",
        "chartmogul_reconcile.py",
    ]
    plugins = tmp_path / "usr" / "local" / "airflow" / "plugins"  # where MWAA unpacks plugins.zip
    with zipfile.ZipFile(out / "plugins.zip") as archive:
        names = archive.namelist()
        archive.extractall(plugins)
    assert "constraints.txt" in names and any(re.fullmatch(r"mogulflow-.*\.whl", n) for n in names)
    requirements = (out / "requirements.txt").read_text()
    assert requirements.startswith('--constraint "/usr/local/airflow/plugins/constraints.txt"')
    local = tmp_path / "requirements.txt"
    local.write_text(requirements.replace("/usr/local/airflow/plugins", str(plugins)))
    resolved = subprocess.run(
        [str(UV), "pip", "compile", "--quiet", "--no-header", "--python-version", "3.11", str(local)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    assert "apache-airflow==3.1.8" in resolved.stdout.splitlines()
    assert any(
        line.startswith("apache-airflow-providers-postgres==") for line in resolved.stdout.splitlines()
    )


# ---- Helm ----------------------------------------------------------------------------------------


def test_helm_values_run_mogulflow_on_the_kubernetes_executor():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["images"]["airflow"]["repository"].endswith("/mogulflow-airflow")
    dockerfile = (REPO / "Dockerfile").read_text()
    [airflow] = re.findall(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert values["airflowVersion"] == values["defaultAirflowTag"] == airflow
    # the DAG files are in the image: no volume, no git-sync
    assert values["dags"]["persistence"]["enabled"] is False
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["triggerer"]["enabled"] is True
    secrets = {s["envName"]: (s["secretName"], s["secretKey"]) for s in values["secret"]}
    assert secrets == {
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": ("mogulflow-connections", "chartmogul_default"),
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": ("mogulflow-connections", "warehouse_default"),
    }
    header = (DEPLOY / "helm" / "values.yaml").read_text()
    assert "--build-arg MOGULFLOW_EXTRAS=postgres " in header  # no sandbox, no celery in this image
    assert "duckdb" not in " ".join(str(e.get("value")) for e in values["env"])


def test_helm_values_fit_the_chart_schema_when_one_is_given():
    sys.path.insert(0, str(DEPLOY / "helm"))
    try:
        from check_values import errors
    finally:
        sys.path.pop(0)
    schema = os.environ.get("MOGULFLOW_HELM_SCHEMA")
    if schema:
        assert errors(Path(schema)) == []
    else:  # the checker itself works: a minimal schema in the chart's style refuses a wrong executor
        minimal = Path(REPO / "var" / "helm-minimal-schema.json")
        minimal.parent.mkdir(exist_ok=True)
        minimal.write_text(
            '{"type": "object", "properties": {"executor": {"type": "string", '
            '"pattern": "^(LocalExecutor|CeleryExecutor|KubernetesExecutor)$"}}}'
        )
        assert errors(minimal) == []
        bad = REPO / "var" / "helm-bad-values.yaml"
        bad.write_text("executor: SequentialExecutor\n")
        assert errors(minimal, bad)
