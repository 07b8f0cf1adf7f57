"""The API key never reaches a log: tasks using the hook fail (wrong key, API errors) under Airflow.

Runs a two-task DAG with `dag.test()` against the sandbox and scans everything Airflow wrote
(stdout, stderr, task log files) for the keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_test_support import SANDBOX_KEY

from mogulflow_sandbox import Faults

WRONG_KEY = "cm_wrong_key_Zq8Xw3Vb6Nt2"


DAG_FILE = """
import logging
from datetime import datetime

from airflow.sdk import DAG, task

with DAG("mogulflow_key_log_scan", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:

    @task
    def with_wrong_key():
        from mogulflow.airflow.hook import ChartMogulHook

        hook = ChartMogulHook(chartmogul_conn_id="cm_wrong")
        logging.getLogger(__name__).info("client %r, hook %s", hook.client, hook)
        print(hook.test_connection())
        hook.client.list_data_sources()  # AuthenticationError: the task fails

    @task
    def with_api_errors():
        from mogulflow.chartmogul import ValidationError
        from mogulflow.airflow.hook import ChartMogulHook

        hook = ChartMogulHook(chartmogul_conn_id="cm_right")
        ds = hook.client.create_data_source("Leads")["uuid"]
        try:
            bad = {"data_source_uuid": ds, "external_id": "x", "name": "X", "email": "bad"}
            hook.client.create_customer(bad)
        except ValidationError:
            logging.getLogger(__name__).exception("expected refusal")
        hook.client.get_customer("cus_does-not-exist")  # NotFoundError: the task fails

    with_wrong_key()
    with_api_errors()
"""


@pytest.mark.slow
def test_key_never_appears_in_task_output(live_sandbox, airflow_db, monkeypatch, capfd, tmp_path):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    for conn_id, key in (("cm_right", SANDBOX_KEY), ("cm_wrong", WRONG_KEY)):
        conn = {"conn_type": "chartmogul", "host": live_sandbox.url, "password": key, "extra": {"timeout": 2}}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    live_sandbox.set_faults(Faults(error_rate_before=0.5, seed=3))
    # dag.test() runs only serialised DAGs: parse the file and write it to the metadata DB first.
    (tmp_path / "key_log_scan.py").write_text(DAG_FILE)
    bag = DagBag(dag_folder=str(tmp_path))
    assert not bag.import_errors, bag.import_errors
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    dag = bag.dags["mogulflow_key_log_scan"]

    run = dag.test()
    captured = capfd.readouterr()
    log_files = [p for p in Path(airflow_db.parent, "logs").rglob("*") if p.is_file()]
    output = captured.out + captured.err + "".join(p.read_text(errors="replace") for p in log_files)
    assert "AuthenticationError" in output and "NotFoundError" in output  # the tasks really ran and failed
    assert "failed" in str(run.state)
    assert WRONG_KEY not in output
    assert SANDBOX_KEY not in output
