"""docs/DESIGN.md is drawn from the code: these fail when a module, a table, a DAG or a layer is
missing from it, or a long module has no reason there."""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest
from repo_paths import REPO

DESIGN = (REPO / "docs" / "DESIGN.md").read_text()
LONG_MODULE_LINES = 450


def _design_tree():
    spec = importlib.util.spec_from_file_location("design_tree", REPO / "scripts" / "design_tree.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tree_is_the_one_the_code_draws():
    design_tree = _design_tree()

    assert design_tree.with_tree(DESIGN) == DESIGN, (
        "docs/DESIGN.md's tree differs from the code: run `.venv/bin/python scripts/design_tree.py --write`"
    )


def test_every_module_of_every_package_is_in_the_tree():
    tree = _design_tree().tree()
    for package in ("mogulflow", "mogulflow_sandbox", "mogulflow_demo"):
        for path in (REPO / "plugins" / package).rglob("*.py"):
            if path.name != "__init__.py":
                assert re.search(rf"^\s+{re.escape(path.name)}\s", tree, re.MULTILINE), path


def test_every_table_mogulflow_writes_is_described():
    tables = re.findall(
        r"CREATE TABLE IF NOT EXISTS (\w+)", (REPO / "plugins/mogulflow/sql/mogulflow_tables.sql").read_text()
    )

    assert tables
    for table in tables:
        assert f"`{table}`" in DESIGN, (
            f"{table} is declared in mogulflow_tables.sql but not in docs/DESIGN.md"
        )


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_and_its_tasks_are_described(dagbag):
    for dag_id, dag in dagbag.dags.items():
        row = next((line for line in DESIGN.splitlines() if line.startswith(f"| `{dag_id}`")), None)
        assert row is not None, f"{dag_id} has no row in docs/DESIGN.md's DAG table"
        for task_id in dag.task_ids:
            assert task_id in row, f"{dag_id}.{task_id} is missing from its row in docs/DESIGN.md"


def test_every_layer_of_the_import_contract_is_described():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c.get("containers") == ["mogulflow"]]
    section = DESIGN.split("## The layers", 1)[1].split("## ", 1)[0]
    described = [line.split("  ")[0].strip() for line in section.split("```")[1].strip().splitlines()]

    assert described == layers


def test_every_long_module_says_why_in_the_design():
    section = DESIGN.split("## Long modules", 1)[1]
    for package in ("mogulflow", "mogulflow_sandbox", "mogulflow_demo"):
        for path in (REPO / "plugins" / package).rglob("*.py"):
            if len(path.read_text().splitlines()) > LONG_MODULE_LINES:
                relative = path.relative_to(REPO / "plugins").as_posix()
                assert f"`{relative}`" in section, (
                    f"{relative} is over {LONG_MODULE_LINES} lines without a reason"
                )
