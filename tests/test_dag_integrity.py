"""The DAG files parse in Airflow 3.3, with the ids, schedule, params and pools the contract names."""

from __future__ import annotations

import itertools

import pytest
from repo_paths import REPO


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}


def test_leads_trials_dag_is_registered_with_a_one_day_data_interval(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["chartmogul_leads_trials"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is False
    assert dag.doc_md and "mogulflow_rejects" in dag.doc_md


def test_leads_trials_dag_has_the_contract_params_with_descriptions(dagbag):
    params = dagbag.dags["chartmogul_leads_trials"].params
    expected = {
        "full_refresh": False,
        "start": None,
        "end": None,
        "dry_run": False,
        "data_source_name": "Leads",
        "max_reject_ratio": 0.05,
        "min_rejects_to_fail": 2,
        "reconcile": False,
        "mirror_deletes": False,
        "max_delete_ratio": 0.01,
        "approve_deletes": False,
    }
    for name, default in expected.items():
        assert params[name] == default, name
        assert params.get_param(name).description, f"param {name} has no description"


def test_leads_trials_tasks_run_in_the_stand_up_order(dagbag):
    dag = dagbag.dags["chartmogul_leads_trials"]
    order = [
        "resolve_window",
        "preflight",
        "ensure_data_source",
        "extract_and_validate",
        "record_rejects",
        "upsert_plans",
        "upsert_customers",
        "import_trial_invoices",
        "sync_lead_attributes",
        "sync_lead_tags",
        "delete_objects",
        "record_run",
        "reconcile_with_chartmogul",
    ]
    # The deletes are planned (and, when the guard says so, approved) while the loads run.
    deletes = ["extract_and_validate", "plan_deletes", "approve_deletes", "delete_objects"]
    assert set(order) | set(deletes) == set(dag.task_ids)
    for chain in (order, deletes):
        for before, after in itertools.pairwise(chain):
            assert after in dag.get_task(before).downstream_task_ids, (before, after)


def test_tasks_that_write_to_chartmogul_run_in_the_chartmogul_api_pool(dagbag):
    dag = dagbag.dags["chartmogul_leads_trials"]
    for task_id in (
        "ensure_data_source",
        "upsert_plans",
        "upsert_customers",
        "import_trial_invoices",
        "sync_lead_attributes",
        "sync_lead_tags",
        "delete_objects",
        "reconcile_with_chartmogul",  # reads only, but through the same API budget
    ):
        assert dag.get_task(task_id).pool == "chartmogul_api", task_id
    assert dag.get_task("extract_and_validate").pool != "chartmogul_api"


def test_dag_file_parses_fast_without_heavy_imports():
    import subprocess
    import sys

    # Fast is what it imports: the time it takes depends on the machine and on what else runs on it.
    heavy = ("pandera", "mogulflow.sync.leads_trials", "duckdb")
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "print('imported:', *(m for m in sys.argv[2:] if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / "chartmogul_leads_trials.py"), *heavy],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": ""},
    )
    imported = result.stdout.splitlines()[-1].removeprefix("imported:").split()
    assert not set(heavy) & set(imported)


def test_merge_dag_is_registered_with_the_contract_params_and_a_one_day_interval(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["chartmogul_merge_converted_leads"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.doc_md
    expected = {
        "full_refresh": False,
        "start": None,
        "end": None,
        "data_source_name": "Leads",
        "lookup_interval_seconds": 60,
        "lookup_timeout_seconds": 1200,
    }
    for name, default in expected.items():
        assert dag.params[name] == default, name
        assert dag.params.get_param(name).description, f"param {name} has no description"


def test_merge_dag_writes_to_chartmogul_only_from_the_pool(dagbag):
    dag = dagbag.dags["chartmogul_merge_converted_leads"]
    assert dag.get_task("merge_customers").pool == "chartmogul_api"
    assert "merge_customers" in dag.get_task("wait_for_paying_customers").downstream_task_ids


def test_reconcile_dag_is_registered_daily_with_the_contract_params(dagbag):
    from airflow.timetables.trigger import CronTriggerTimetable

    dag = dagbag.dags["chartmogul_reconcile"]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.catchup is False
    assert dag.doc_md and "mogulflow_reconciliation" in dag.doc_md
    for name, default in {"data_source_name": "Leads", "resend": False}.items():
        assert dag.params[name] == default, name
        assert dag.params.get_param(name).description, f"param {name} has no description"
    assert dag.task_ids == ["reconcile_with_chartmogul"]
    assert dag.get_task("reconcile_with_chartmogul").pool == "chartmogul_api"


def test_reconcile_dag_file_parses_without_heavy_imports():
    import subprocess
    import sys

    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "print(','.join(m for m in ('mogulflow.reconcile.compare', 'duckdb') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / "chartmogul_reconcile.py")],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": ""},
    )
    assert result.stdout.strip() == "", f"imported at parse time: {result.stdout.strip()}"
