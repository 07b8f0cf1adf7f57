"""README's table of every setting is `mogulflow settings`' output, and that output names every setting
the code reads: environment variables, Airflow Variables, connection extras, params."""

from __future__ import annotations

import ast
import re

from repo_paths import REPO

PACKAGE = REPO / "plugins" / "mogulflow"


def _string_constants() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_the_readme_table_is_the_generated_one():
    from mogulflow.cli.settings import markdown_table

    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- settings:start[^\n]*-->\n(.*?)<!-- settings:end -->", readme, re.DOTALL)
    assert block, "README.md lost its settings block"
    assert block[1] == markdown_table(), "README's settings table is stale: run `make settings-table`"


def test_every_environment_variable_the_code_reads_is_in_the_table():
    from mogulflow.cli.settings import all_settings

    read = {value for value in _string_constants() if re.fullmatch(r"MOGULFLOW_[A-Z_]+", value)}
    listed = {s.name for s in all_settings() if s.where == "environment variable"}
    assert read == listed


def test_every_airflow_variable_and_connection_extra_is_in_the_table():
    from mogulflow.cli.settings import all_settings

    listed = {(s.where, s.name) for s in all_settings()}
    sources = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for name in re.findall(r'_VARIABLE = "([a-z_]+)"', sources):
        assert ("Airflow Variable", name) in listed
    hook = (PACKAGE / "airflow" / "hook.py").read_text()
    extras = set(re.findall(r'_(?:setting|extra)\(\s*extras,\s*"([a-z_]+)"', hook))
    assert extras and extras == {name for where, name in listed if where.startswith("extra of")}


def test_every_param_of_every_dag_is_in_the_table():
    from airflow.dag_processing.dagbag import DagBag

    from mogulflow.cli.settings import all_settings

    listed = {(s.where, s.name) for s in all_settings()}
    bag = DagBag(dag_folder=str(REPO / "dags"))
    for dag_id, dag in bag.dags.items():
        for name in dag.params:
            assert (f"param of `{dag_id}`", name) in listed, (dag_id, name)
