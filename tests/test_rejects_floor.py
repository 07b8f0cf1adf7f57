"""Rejects on small windows (issue 17): one bad row of a few never fails a night, yet is reported and
alerted on; the same share of a large extract still fails the run before that entity is loaded.

`max_reject_ratio` (default 5%) and `min_rejects_to_fail` (default 2) decide together: an entity's
rejects fail the run only when their share is above the ratio *and* there are at least that many.
"""

from __future__ import annotations

import pytest
from builders import lead, plan
from direct_sync import run_row, run_sync_account, sandbox_client
from test_sync_engine import write_warehouse

from mogulflow.airflow.notifications import rejects_alert
from mogulflow.values.entities import Entity
from mogulflow.values.errors import SetupError
from mogulflow.values.reject_policy import RejectVerdict, judge_rejects
from mogulflow.values.run_settings import resolve_settings
from mogulflow.values.step_reports import StagedExtract

ALERT_THRESHOLD = 0.01  # the Variable mogulflow_alert_reject_ratio's default


def plans(count: int, bad: int) -> list[dict]:
    """`count` plans of which `bad` have a weekly interval (rejected: day, month or year only)."""
    return [plan(f"P{i:04d}", interval_unit="week" if i < bad else "month") for i in range(count)]


def settings(**params):
    return resolve_settings(params, run_id="r", dag_id="d", data_interval_start=None, data_interval_end=None)


def extract(extracted: int, rejected: int) -> StagedExtract:
    return StagedExtract(Entity.PLAN, extracted, extracted - rejected, rejected, {}, "", "")


@pytest.fixture
def warehouse_path(tmp_path):
    return tmp_path / "nightly.duckdb"


@pytest.fixture
def client(sandbox):
    with sandbox_client(sandbox.url) as client:
        yield client


def test_a_window_of_15_plans_with_one_bad_succeeds_with_rejects_and_an_alert(
    sandbox, client, warehouse_path
):
    write_warehouse(warehouse_path, leads=[lead("L1")], plans=plans(15, bad=1))

    account = run_sync_account(warehouse_path, client, run_id="nightly", full_refresh=True)

    summary = account.summary
    assert str(summary.outcome) == "success_with_rejects"
    counts = summary.counts[Entity.PLAN]
    assert (counts.extracted, counts.rejected, counts.created, counts.failed) == (15, 1, 14, 0)
    assert len(sandbox.state.plans()) == 14  # the 14 good plans were loaded
    spared = account.details.rejects_spared[Entity.PLAN]
    assert "1 of 15 plan rows rejected (6.7%), above max_reject_ratio 5.0%" in spared
    assert "fewer than min_rejects_to_fail (2)" in spared
    alert = rejects_alert("chartmogul_leads_trials", "nightly", account, ALERT_THRESHOLD)
    assert alert is not None and "with many rejects" in alert.headline
    assert any("min_rejects_to_fail" in line for line in alert.details)
    assert run_row(warehouse_path, "nightly")["outcome"] == "success_with_rejects"


def test_the_same_share_of_a_large_extract_still_fails_before_loading_the_plans(
    sandbox, client, warehouse_path
):
    write_warehouse(warehouse_path, leads=[lead("L1")], plans=plans(300, bad=20))  # 6.7% as well

    account = run_sync_account(warehouse_path, client, run_id="nightly", full_refresh=True)

    assert str(account.summary.outcome) == "failed"
    assert (
        "20 of 300 plan rows rejected (6.7%), above max_reject_ratio 5.0%: not loaded"
        in account.summary.message
    )
    assert sandbox.state.plans() == []
    assert account.summary.counts[Entity.PLAN].failed == 280  # valid, but not loaded


def test_a_floor_of_one_is_the_ratio_alone():
    assert judge_rejects(extract(15, 1), settings(min_rejects_to_fail=1)) is RejectVerdict.TOO_MANY
    assert judge_rejects(extract(15, 1), settings()) is RejectVerdict.SPARED
    assert judge_rejects(extract(15, 2), settings()) is RejectVerdict.TOO_MANY
    assert judge_rejects(extract(100, 5), settings()) is RejectVerdict.WITHIN  # 5% is not above 5%


@pytest.mark.parametrize("floor", [-1, 1.5, "many"])
def test_a_floor_that_is_not_a_whole_number_of_rows_is_refused(floor):
    with pytest.raises(SetupError, match="min_rejects_to_fail"):
        settings(min_rejects_to_fail=floor)
