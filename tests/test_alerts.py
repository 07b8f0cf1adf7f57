"""Alerts: a failed run, a run with too many rejects and a late run reach Slack (a local webhook double)
or, without a Slack connection, one WARNING log line; the deadline is registered on both DAGs.

The run alerts are fired by real `dag.test()` runs of `chartmogul_leads_trials` (sample warehouse,
sandbox over HTTP), whose DAG callbacks run the notifier; the deadline alert is fired the way the
triggerer fires it (Airflow's own `CallbackTrigger`), with the context a missed deadline carries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from airflow_setup import FULL_REFRESH_CONF
from repo_paths import REPO
from slack_double import slack_webhook

DAG_IDS = ("chartmogul_leads_trials", "chartmogul_merge_converted_leads")
SLACK_ENV = "AIRFLOW_CONN_MOGULFLOW_SLACK"
DEFAULT_CONF = FULL_REFRESH_CONF


@pytest.fixture
def slack(monkeypatch):
    with slack_webhook() as double:
        monkeypatch.setenv(SLACK_ENV, double.connection_json())
        yield double


@pytest.fixture
def no_slack(monkeypatch):
    monkeypatch.delenv(SLACK_ENV, raising=False)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def alert_lines(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "mogulflow.airflow.notifications" and r.levelno == logging.WARNING
    ]


# ---- the run alerts, fired by real runs ------------------------------------------------------------------


@pytest.mark.slow
def test_a_failed_run_posts_its_outcome_counts_and_where_to_look_to_slack(
    airflow_db, connections, slack, dagbag
):
    dag_run = dagbag.dags["chartmogul_leads_trials"].test(run_conf={**DEFAULT_CONF, "max_reject_ratio": 0.0})

    assert dag_run.state == "failed"
    [text] = slack.texts()
    assert f"chartmogul_leads_trials run {dag_run.run_id} FAILED" in text
    assert "above max_reject_ratio" in text  # the run's own reason, from its account
    assert "lead: extracted 6 = created 0 + updated 0 + unchanged 0 + rejected 2 + failed 4" in text
    assert "lead rejected by rule:" in text
    assert "mogulflow_runs and mogulflow_rejects" in text
    assert (
        f"/dags/chartmogul_leads_trials/runs/{dag_run.run_id.replace(':', '%3A').replace('+', '%2B')}" in text
    )


@pytest.mark.slow
def test_a_successful_run_with_rejects_above_the_alert_ratio_posts_to_slack(
    airflow_db, connections, slack, dagbag
):
    dag_run = dagbag.dags["chartmogul_leads_trials"].test(run_conf=DEFAULT_CONF)

    assert dag_run.state == "success"
    [text] = slack.texts()
    assert (
        f"chartmogul_leads_trials run {dag_run.run_id} ended success_with_rejects with many rejects" in text
    )
    assert "lead: 2 of 6 rows rejected (33.3%), above the alert threshold 1.0%" in text
    assert "trial: extracted" in text


@pytest.mark.slow
def test_rejects_below_the_alert_ratio_send_nothing(airflow_db, connections, slack, dagbag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MOGULFLOW_ALERT_REJECT_RATIO", "0.9")

    dag_run = dagbag.dags["chartmogul_leads_trials"].test(run_conf=DEFAULT_CONF)

    assert dag_run.state == "success"
    assert slack.texts() == []


@pytest.mark.slow
def test_without_slack_a_failed_run_is_one_warning_line(airflow_db, connections, no_slack, dagbag, caplog):
    caplog.set_level(logging.INFO, logger="mogulflow.airflow.notifications")

    dag_run = dagbag.dags["chartmogul_leads_trials"].test(run_conf={**DEFAULT_CONF, "max_reject_ratio": 0.0})

    assert dag_run.state == "failed"
    [line] = alert_lines(caplog)
    assert "\n" not in line
    assert line.startswith(f"mogulflow: chartmogul_leads_trials run {dag_run.run_id} FAILED | Why: ")
    assert "lead: extracted 6" in line and "mogulflow_rejects" in line


@pytest.mark.slow
def test_a_small_window_with_one_bad_plan_succeeds_with_rejects_and_still_alerts(
    airflow_db, sandbox, slack, dagbag, monkeypatch, tmp_path
):
    from airflow_setup import chartmogul_connection, duckdb_connection
    from builders import lead, plan
    from test_sync_engine import write_warehouse

    path = tmp_path / "nightly.duckdb"
    plans = [plan(f"P{i:02d}", interval_unit="week" if i == 0 else "month") for i in range(15)]
    write_warehouse(path, leads=[lead("L1")], plans=plans)
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", json.dumps(chartmogul_connection(sandbox.url)))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps(duckdb_connection(path)))

    # the defaults: max_reject_ratio 5%, min_rejects_to_fail 2; 1 bad plan of 15 is 6.7%
    dag_run = dagbag.dags["chartmogul_leads_trials"].test(run_conf={**DEFAULT_CONF, "max_reject_ratio": 0.05})

    assert dag_run.state == "success"
    assert len(sandbox.state.plans()) == 14
    [text] = slack.texts()
    assert "ended success_with_rejects with many rejects" in text
    assert "plan: 1 of 15 plan rows rejected (6.7%), above max_reject_ratio 5.0%, but fewer than" in text


# ---- the deadline ----------------------------------------------------------------------------------------


def serialized(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


@pytest.fixture(scope="module")
def deadline_dagbag():
    """Both DAGs parsed with `MOGULFLOW_DEADLINE_MINUTES=360` (a deadline is opt-in)."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOGULFLOW_DEADLINE_MINUTES", "360")
        return DagBag(dag_folder=str(REPO / "dags"))


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_both_dags_register_a_deadline_after_queued_that_calls_the_notifier(deadline_dagbag, dag_id):
    from airflow.serialization.encoders import encode_deadline_alert

    [alert] = deadline_dagbag.dags[dag_id].deadline
    encoded = encode_deadline_alert(alert)
    assert encoded["reference"]["reference_type"] == "DagRunQueuedAtDeadline"
    assert alert.interval == timedelta(hours=6)
    assert encoded["callback"]["__data__"]["path"] == "mogulflow.airflow.notifications.RunAlertNotifier"
    assert encoded["callback"]["__data__"]["kwargs"] == {"kind": "late"}
    # what the scheduler reads: the DAG as serialized, with its deadline alert
    assert serialized(deadline_dagbag.dags[dag_id]).deadline


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_without_deadline_minutes_no_deadline_is_declared(dagbag, dag_id):
    assert not dagbag.dags[dag_id].deadline


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_both_dags_alert_on_failure_and_on_success(dagbag, dag_id):
    from mogulflow.airflow.notifications import AlertKind, RunAlertNotifier

    dag = dagbag.dags[dag_id]
    assert isinstance(dag.on_failure_callback, RunAlertNotifier)
    assert dag.on_failure_callback.kind is AlertKind.FAILED
    assert isinstance(dag.on_success_callback, RunAlertNotifier)
    assert dag.on_success_callback.kind is AlertKind.REJECTS
    assert serialized(dag).has_on_failure_callback


def test_the_deadline_minutes_come_from_the_environment_and_zero_declares_none(monkeypatch):
    from mogulflow.airflow.notifications import DEADLINE_MINUTES_ENV, run_alerts

    monkeypatch.setenv(DEADLINE_MINUTES_ENV, "90")
    assert run_alerts()["deadline"].interval == timedelta(minutes=90)
    monkeypatch.setenv(DEADLINE_MINUTES_ENV, "0")
    assert run_alerts()["deadline"] is None


def missed_deadline_context() -> dict:
    """What `Deadline.handle_miss` hands the callback: the run as JSON and the deadline."""
    return {
        "dag_run": {
            "dag_id": "chartmogul_leads_trials",
            "dag_run_id": "scheduled__2026-11-28T00:00:00+00:00",
            "state": "running",
            "queued_at": "2026-11-29T00:00:02+00:00",
            "start_date": "2026-11-29T00:00:05+00:00",
        },
        "deadline": {"id": "0190", "deadline_time": "2026-11-29T06:00:02+00:00"},
    }


def fire_deadline(dag) -> list:
    """Run the deadline's callback as the triggerer does: Airflow's CallbackTrigger, by import path."""
    from airflow.serialization.encoders import encode_deadline_alert
    from airflow.triggers.callback import CallbackTrigger

    callback = encode_deadline_alert(dag.deadline[0])["callback"]["__data__"]
    trigger = CallbackTrigger(callback["path"], {**callback["kwargs"], "context": missed_deadline_context()})

    async def events() -> list:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(events())


def test_a_missed_deadline_posts_to_slack_from_the_triggerer(deadline_dagbag, slack):
    events = fire_deadline(deadline_dagbag.dags["chartmogul_leads_trials"])

    assert events[-1]["state"] == "success", events
    [text] = slack.texts()
    assert text.startswith(
        "mogulflow: chartmogul_leads_trials run scheduled__2026-11-28T00:00:00+00:00 is not done by its "
        "deadline 2026-11-29T06:00:02+00:00"
    )
    assert "State: running" in text
    assert "/dags/chartmogul_leads_trials/runs/scheduled__2026-11-28T00%3A00%3A00%2B00%3A00" in text


def test_a_missed_deadline_without_slack_is_one_warning_line(deadline_dagbag, no_slack, caplog):
    caplog.set_level(logging.INFO, logger="mogulflow.airflow.notifications")

    events = fire_deadline(deadline_dagbag.dags["chartmogul_merge_converted_leads"])

    assert events[-1]["state"] == "success", events
    [line] = alert_lines(caplog)
    assert "is not done by its deadline" in line and "\n" not in line


def test_an_unreachable_slack_falls_back_to_the_warning_line(deadline_dagbag, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="mogulflow.airflow.notifications")
    with slack_webhook() as gone:
        connection = gone.connection_json()
    monkeypatch.setenv(SLACK_ENV, connection)  # the webhook's server has stopped

    events = fire_deadline(deadline_dagbag.dags["chartmogul_leads_trials"])

    assert events[-1]["state"] == "success", events  # the alert did not fail the callback
    [line] = alert_lines(caplog)
    assert "is not done by its deadline" in line and "Slack connection mogulflow_slack failed" in line


@pytest.mark.slow
def test_airflow_3_3_2_dag_test_fails_a_successful_run_with_a_deadline(
    airflow_db, connections, deadline_dagbag
):
    """Why the deadline is opt-in: `dag.test()` (and `airflow dags test`) looks the run's deadline alert up
    by id when the run succeeds, and the alert it holds was never stored. When this test fails, Airflow
    fixed it: the deadline can then be declared by default."""
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError, match="has no attribute 'hex'"):
        deadline_dagbag.dags["chartmogul_leads_trials"].test(run_conf=DEFAULT_CONF)
