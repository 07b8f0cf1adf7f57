"""The sync engine's promises: only what changed is sent, a killed load resumes without duplicates
or gaps, every row is accounted for and failed rows come back, a backfill equals a full refresh,
a dry run writes nothing, and the lead-date default rule holds across runs.

Outcomes are read where a user would look: the sandbox's state and request log, and the warehouse
tables `mogulflow_runs`, `mogulflow_rejects` and `mogulflow_sync_state`.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest
from builders import lead, plan, trial
from direct_sync import (
    API_KEY,
    LINE_ITEM_FIELDS,
    assert_account_adds_up,
    duplicated,
    query,
    run_row,
    run_sync_directly,
    sandbox_client,
    synced_account,
)
from repo_paths import REPO

from mogulflow.values.entities import Entity
from mogulflow_sandbox import Faults, SandboxServer

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
LINE_ITEM_AMOUNT = LINE_ITEM_FIELDS.index("amount_in_cents")
LINE_ITEM_QUANTITY = LINE_ITEM_FIELDS.index("quantity")


# ---- arranging ---------------------------------------------------------------------------------


def write_warehouse(path, *, leads=(), plans=(), trials=()) -> None:
    """Create the source tables in a DuckDB file and fill them with builder rows."""
    columns = {
        "leads": list(lead()),
        "plans": list(plan()),
        "trials": list(trial()),
    }
    with duckdb.connect(str(path)) as connection:
        connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        for table, rows in (("leads", leads), ("plans", plans), ("trials", trials)):
            if not rows:
                continue
            frame = pd.DataFrame(list(rows), columns=columns[table])
            connection.register("rows", frame)
            connection.execute(f"INSERT INTO {table} SELECT {', '.join(columns[table])} FROM rows")
            connection.unregister("rows")


def change_lead(path, lead_id: str, **values) -> None:
    """UPDATE one lead's columns in the warehouse, as an upstream job would."""
    assignments = ", ".join(f"{column} = ?" for column in values)
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"UPDATE leads SET {assignments} WHERE lead_id = ?", [*values.values(), lead_id])


def writes(sandbox, after_seq: int = 0) -> list[tuple[str, str]]:
    """(method, path) of every write request the sandbox saw after `after_seq`."""
    return [(r.method, r.path) for r in sandbox.requests if r.method in WRITE_METHODS and r.seq > after_seq]


def last_seq(sandbox) -> int:
    return max((r.seq for r in sandbox.requests), default=0)


def leads_source(sandbox) -> str:
    source = sandbox.state.data_source_by_name("Leads")
    assert source is not None, "the Leads data source was not created"
    return source["uuid"]


def sync_state(path, entity: str | None = None) -> list[tuple]:
    """(entity, external_id, chartmogul_uuid, status, content_hash) rows, sorted."""
    where = "" if entity is None else f"WHERE entity = '{entity}'"
    return query(
        path,
        "SELECT entity, external_id, chartmogul_uuid, status, content_hash "
        f"FROM mogulflow_sync_state {where} ORDER BY 1, 2",
    )


def set_connections(monkeypatch, sandbox_url: str, warehouse_path) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        json.dumps(
            {
                "conn_type": "chartmogul",
                "host": sandbox_url,
                "password": API_KEY,
                "extra": {"requests_per_second": 1000},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "duckdb", "host": str(warehouse_path)})
    )


@pytest.fixture(scope="module")
def leads_trials_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / "chartmogul_leads_trials.py")).dags[
        "chartmogul_leads_trials"
    ]


@pytest.fixture
def warehouse_path(tmp_path):
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def connections(monkeypatch, sandbox, warehouse_path):
    set_connections(monkeypatch, sandbox.url, warehouse_path)


# Every param, every time: in `dag.test()` a run's conf is written into the DAG's own Param objects
# (airflow.sdk.definitions.param.process_params updates shared Params), so a param one run set
# would silently carry over to the next run of the same DAG object.
DEFAULT_CONF = {
    "full_refresh": False,
    "start": None,
    "end": None,
    "dry_run": False,
    "data_source_name": "Leads",
    "max_reject_ratio": 0.05,
    "min_rejects_to_fail": 2,
}


def run_dag(dag, **conf):
    return dag.test(run_conf={**DEFAULT_CONF, **conf})


T = datetime.fromisoformat


# ---- 1. only what changed ------------------------------------------------------------------------


@pytest.mark.slow
def test_one_changed_lead_is_sent_as_one_patch_of_only_its_changed_fields(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    write_warehouse(
        warehouse_path,
        leads=[lead("L1"), lead("L2", email="old@beta.example"), lead("L3", email=None)],
        plans=[plan("P1")],
        trials=[trial("T1", lead_id="L1")],
    )
    assert run_dag(leads_trials_dag, full_refresh=True).state == "success"
    ds = leads_source(sandbox)
    l2 = sandbox.state.find_customer(ds, "L2")
    # Someone edits the customer in ChartMogul: a PATCH of only the changed field leaves that alone.
    sandbox.state.update_customer(l2["uuid"], {"city": "Edited in ChartMogul"})
    before = last_seq(sandbox)
    change_lead(warehouse_path, "L2", email="new@beta.example", updated_at=T("2025-06-01 00:00"))

    dag_run = run_dag(leads_trials_dag, full_refresh=True)

    assert dag_run.state == "success"
    assert writes(sandbox, before) == [("PATCH", f"/v1/customers/{l2['uuid']}")]
    l2_after = sandbox.state.find_customer(ds, "L2")
    assert l2_after["email"] == "new@beta.example"
    assert l2_after["city"] == "Edited in ChartMogul", "the PATCH sent fields that did not change"
    row = run_row(warehouse_path, dag_run.run_id)
    assert (row["leads_updated"], row["leads_unchanged"], row["leads_created"]) == (1, 2, 0)
    assert (row["trials_unchanged"], row["plans_unchanged"]) == (1, 1)
    [(payload,)] = query(
        warehouse_path,
        "SELECT payload FROM mogulflow_sync_state WHERE entity = 'lead' AND external_id = 'L2'",
    )
    assert json.loads(payload)["email"] == "new@beta.example"


# ---- 5. dry run ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dry_run_writes_nothing_and_reports_what_it_would_do(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    write_warehouse(
        warehouse_path,
        leads=[lead("L1"), lead("L2"), lead("L3", email="bad@")],
        plans=[plan("P1")],
        trials=[trial("T1", lead_id="L1"), trial("T2", lead_id="L2")],
    )

    first = run_dag(leads_trials_dag, full_refresh=True, dry_run=True, max_reject_ratio=0.5)

    assert first.state == "success"
    assert writes(sandbox) == []
    assert sandbox.state.data_source_by_name("Leads") is None
    assert sync_state(warehouse_path) == []
    row = run_row(warehouse_path, first.run_id)
    assert row["dry_run"] is True
    assert (row["leads_created"], row["leads_rejected"]) == (2, 1)
    assert (row["plans_created"], row["trials_created"]) == (1, 2)
    assert_account_adds_up(row)

    assert run_dag(leads_trials_dag, full_refresh=True, max_reject_ratio=0.5).state == "success"
    state_after_real_run = query(
        warehouse_path, "SELECT * FROM mogulflow_sync_state ORDER BY entity, external_id"
    )
    before = last_seq(sandbox)
    change_lead(warehouse_path, "L2", company_name="Beta Renamed", updated_at=T("2025-06-01 00:00"))

    again = run_dag(leads_trials_dag, full_refresh=True, dry_run=True, max_reject_ratio=0.5)

    assert again.state == "success"
    assert writes(sandbox, before) == []
    assert sandbox.state.find_customer(leads_source(sandbox), "L2")["name"] == "Acme Corp"
    assert (
        query(warehouse_path, "SELECT * FROM mogulflow_sync_state ORDER BY entity, external_id")
        == state_after_real_run
    )
    row = run_row(warehouse_path, again.run_id)
    assert (row["leads_created"], row["leads_updated"], row["leads_unchanged"]) == (0, 1, 1)
    assert (row["trials_unchanged"], row["plans_unchanged"]) == (2, 1)


# ---- 6. the lead-date default rule across runs -------------------------------------------------------


@pytest.mark.slow
def test_trial_in_a_later_run_dates_a_lead_synced_earlier_without_dates(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    write_warehouse(
        warehouse_path,
        leads=[
            lead("L1", lead_created_at=None, free_trial_started_at=None, updated_at=T("2025-03-01 10:00"))
        ],
        plans=[plan("P1", updated_at=T("2025-03-01 05:00"))],
        trials=[
            trial(
                "T1",
                lead_id="L1",
                started_at=T("2025-04-10 09:30"),
                ends_at=T("2025-04-24 09:30"),
                updated_at=T("2025-04-10 12:00"),
            )
        ],
    )
    first = run_dag(leads_trials_dag, start="2025-03-01T00:00:00Z", end="2025-03-02T00:00:00Z")
    assert first.state == "success"
    ds = leads_source(sandbox)
    customer = sandbox.state.find_customer(ds, "L1")
    assert customer["lead_created_at"] is None
    before = last_seq(sandbox)

    second = run_dag(leads_trials_dag, start="2025-04-10T00:00:00Z", end="2025-04-11T00:00:00Z")

    row = run_row(warehouse_path, second.run_id)
    assert (row["leads_extracted"], row["trials_extracted"], row["trials_rejected"]) == (0, 1, 0)
    assert row["trials_created"] == 1
    assert query(warehouse_path, f"SELECT * FROM mogulflow_rejects WHERE run_id = '{second.run_id}'") == []
    assert sandbox.state.find_customer(ds, "L1")["lead_created_at"].startswith("2025-04-10T09:30:00")
    [invoice] = sandbox.state.invoices(data_source_uuid=ds)
    assert (invoice["external_id"], invoice["customer_uuid"]) == ("T1", customer["uuid"])
    assert ("PATCH", f"/v1/customers/{customer['uuid']}") in writes(sandbox, before)
    [(payload,)] = query(
        warehouse_path,
        "SELECT payload FROM mogulflow_sync_state WHERE entity = 'lead' AND external_id = 'L1'",
    )
    assert json.loads(payload)["lead_created_at"] == "2025-04-10T09:30:00Z"


def test_redating_a_lead_synced_in_an_earlier_run_keeps_the_run_account_balanced(tmp_path, sandbox):
    warehouse_path = tmp_path / "warehouse.duckdb"
    write_warehouse(
        warehouse_path,
        leads=[
            lead("L1", lead_created_at=None, free_trial_started_at=None, updated_at=T("2025-03-01 10:00"))
        ],
        plans=[plan("P1", updated_at=T("2025-03-01 05:00"))],
        trials=[trial("T1", lead_id="L1", updated_at=T("2025-04-10 12:00"))],
    )
    with sandbox_client(sandbox.url) as client:
        run_sync_directly(warehouse_path, client, run_id="leads_day", start="2025-03-01", end="2025-03-02")
        summary = run_sync_directly(
            warehouse_path, client, run_id="trials_day", start="2025-04-10", end="2025-04-11"
        )

    assert (summary.outcome, summary.message) == ("success", "all rows synced")
    assert_account_adds_up(run_row(warehouse_path, "trials_day"))


# ---- 3. failed rows come back --------------------------------------------------------------------


def many_leads_with_trials(count: int):
    leads = [lead(f"L{i:03d}", email=f"owner{i}@lead{i}.example") for i in range(count)]
    trials = [trial(f"T{i:03d}", lead_id=f"L{i:03d}", subscription_id=f"S{i:03d}") for i in range(count)]
    return leads, trials


@pytest.mark.slow
def test_rows_that_failed_after_retries_are_synced_by_the_next_run_even_outside_its_window(
    airflow_db, monkeypatch, sandbox, warehouse_path, leads_trials_dag
):
    from mogulflow.chartmogul.retry import RetryPolicy

    leads, trials = many_leads_with_trials(80)
    write_warehouse(warehouse_path, leads=leads, plans=[plan("P1")], trials=trials)
    set_connections(monkeypatch, sandbox.url, warehouse_path)
    # Two quick attempts per request, so that some writes outlive their retries in a second.
    monkeypatch.setattr(
        "mogulflow.airflow.hook.RetryPolicy",
        functools.partial(RetryPolicy, max_attempts=2, base_delay=0.001, max_delay=0.005),
    )
    sandbox.set_faults(Faults(error_rate_before=0.3, seed=11))

    first = run_dag(leads_trials_dag, full_refresh=True)

    assert first.state == "failed"
    assert sandbox.fault_counts().get("error_before", 0) > 0
    row = run_row(warehouse_path, first.run_id)
    assert row["outcome"] == "failed"
    assert row["leads_failed"] > 0, row
    assert_account_adds_up(row)
    failed = {
        entity: {
            external_id
            for _, external_id, _, status, _ in sync_state(warehouse_path, entity)
            if status == "failed"
        }
        for entity in ("plan", "lead", "trial")
    }
    assert len(failed["lead"]) == row["leads_failed"]
    assert len(failed["trial"]) == row["trials_failed"]
    assert len(failed["plan"]) == row["plans_failed"]

    sandbox.set_faults(Faults())
    second = run_dag(leads_trials_dag, start="2020-01-01T00:00:00Z", end="2020-01-02T00:00:00Z")

    assert second.state == "success"
    row = run_row(warehouse_path, second.run_id)
    assert (row["leads_extracted"], row["trials_extracted"], row["plans_extracted"]) == (
        len(failed["lead"]),
        len(failed["trial"]),
        len(failed["plan"]),
    )
    assert (row["leads_failed"], row["trials_failed"], row["plans_failed"]) == (0, 0, 0)
    assert_account_adds_up(row)
    account = synced_account(sandbox.state)
    assert duplicated(account) == {"customers": [], "plans": [], "invoices": []}
    assert set(account["customers"]) == {r["lead_id"] for r in leads}
    assert set(account["invoices"]) == {r["trial_id"] for r in trials}
    ds = leads_source(sandbox)
    uuids = {c["external_id"]: c["uuid"] for c in sandbox.state.customers(ds)}
    lead_state = sync_state(warehouse_path, "lead")
    assert {status for *_, status, _ in lead_state} == {"synced"}
    assert {external_id: uuid for _, external_id, uuid, _, _ in lead_state} == uuids
    assert {status for *_, status, _ in sync_state(warehouse_path)} == {"synced"}


# ---- 4. a backfill equals a full refresh -----------------------------------------------------------

BACKFILL_START = datetime(2025, 1, 1)
BACKFILL_DAYS = 30


def write_sample_squeezed_into_days(path, days: int = BACKFILL_DAYS) -> None:
    """The sample warehouse (1,000 leads, its broken rows included) with every timestamp mapped
    linearly from its ten months onto `days` days from BACKFILL_START: order (lead before trial,
    start before end, duplicates' older rows first) is kept, so each day holds a realistic slice."""
    from mogulflow_demo.sample_warehouse import SAMPLE_END, SAMPLE_START, build_sample_frames

    frames, _ = build_sample_frames(seed=7, leads=1000)
    factor = timedelta(days=days) / (SAMPLE_END - SAMPLE_START)
    with duckdb.connect(str(path)) as connection:
        connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        for table in ("leads", "plans", "trials"):
            frame = frames[table].copy()
            for column in frame.columns:
                if pd.api.types.is_datetime64_any_dtype(frame[column]):
                    squeezed = pd.Timestamp(BACKFILL_START) + (frame[column] - SAMPLE_START) * factor
                    frame[column] = squeezed.dt.floor("s").astype("datetime64[us]")
            connection.register("rows", frame)
            connection.execute(f"INSERT INTO {table} SELECT {', '.join(frame.columns)} FROM rows")
            connection.unregister("rows")


def day(offset: int) -> str:
    return (BACKFILL_START + timedelta(days=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def backfill_windows() -> list[tuple[str, str]]:
    """Thirty daily windows in order; every fifth day run twice; every seventh day a 3-day window
    re-reading the two days before it."""
    windows = []
    for offset in range(BACKFILL_DAYS):
        windows.append((day(offset), day(offset + 1)))
        if offset % 5 == 4:
            windows.append((day(offset), day(offset + 1)))
        if offset % 7 == 6:
            windows.append((day(offset - 2), day(offset + 1)))
    return windows


@pytest.fixture(scope="module")
def backfill_and_full_refresh(tmp_path_factory):
    """The squeezed sample synced twice: by the backfill's windows into one sandbox, and by one full
    refresh into another. Returns both accounts."""
    folder = tmp_path_factory.mktemp("backfill")
    backfilled_warehouse = folder / "backfilled.duckdb"
    write_sample_squeezed_into_days(backfilled_warehouse)
    refreshed_warehouse = folder / "refreshed.duckdb"
    refreshed_warehouse.write_bytes(backfilled_warehouse.read_bytes())
    with SandboxServer(port=0) as backfilled, SandboxServer(port=0) as refreshed:
        with sandbox_client(backfilled.url) as client:
            for number, (start, end) in enumerate(backfill_windows()):
                # one day's slice of a sample with 2.5% broken rows can exceed 5% of rejects
                run_sync_directly(
                    backfilled_warehouse,
                    client,
                    run_id=f"backfill_{number:02d}",
                    start=start,
                    end=end,
                    max_reject_ratio=1.0,
                )
        with sandbox_client(refreshed.url) as client:
            run_sync_directly(refreshed_warehouse, client, run_id="full_refresh", full_refresh=True)
        return synced_account(backfilled.state), synced_account(refreshed.state)


def differences(backfill: dict, refresh: dict) -> dict[str, dict[str, int | str]]:
    """Per kind: how many objects only one side has or that differ, with one example."""
    found = {}
    for kind in ("plans", "customers", "invoices"):
        missing = sorted(set(refresh[kind]) - set(backfill[kind]))
        extra = sorted(set(backfill[kind]) - set(refresh[kind]))
        differing = sorted(
            k for k in set(refresh[kind]) & set(backfill[kind]) if backfill[kind][k] != refresh[kind][k]
        )
        if missing or extra or differing:
            example = (missing or extra or differing)[0]
            found[kind] = {
                "missing": len(missing),
                "extra": len(extra),
                "differing": len(differing),
                "example": f"{example}: backfill {backfill[kind].get(example)} / "
                f"full refresh {refresh[kind].get(example)}",
            }
    return found


def test_backfill_with_repeated_and_overlapping_windows_creates_nothing_twice(backfill_and_full_refresh):
    backfill, refresh = backfill_and_full_refresh

    assert duplicated(backfill) == {"customers": [], "plans": [], "invoices": []}
    assert set(backfill["customers"]) == set(refresh["customers"])
    assert backfill["plans"] == refresh["plans"]
    assert set(backfill["invoices"]) <= set(refresh["invoices"])


def test_daily_backfill_ends_where_one_full_refresh_ends(backfill_and_full_refresh):
    backfill, refresh = backfill_and_full_refresh

    assert differences(backfill, refresh) == {}


def test_rerunning_an_older_window_does_not_bring_back_an_older_row(tmp_path, sandbox):
    warehouse_path = tmp_path / "warehouse.duckdb"
    write_warehouse(
        warehouse_path,
        leads=[
            lead("L1", company_name="Acme (old name)", updated_at=T("2025-03-01 10:00")),
            lead("L1", company_name="Acme GmbH", updated_at=T("2025-03-02 10:00")),
        ],
        plans=[plan("P1", updated_at=T("2025-03-01 05:00"))],
    )
    first_day = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}
    second_day = {"start": "2025-03-02T00:00:00Z", "end": "2025-03-03T00:00:00Z"}
    with sandbox_client(sandbox.url) as client:
        run_sync_directly(warehouse_path, client, run_id="day_1", **first_day)
        run_sync_directly(warehouse_path, client, run_id="day_2", **second_day)
        assert sandbox.state.find_customer(leads_source(sandbox), "L1")["name"] == "Acme GmbH"

        run_sync_directly(warehouse_path, client, run_id="day_1_again", **first_day)

    assert sandbox.state.find_customer(leads_source(sandbox), "L1")["name"] == "Acme GmbH"


@pytest.mark.slow
def test_a_scheduled_days_run_reads_exactly_its_one_day_data_interval(
    airflow_db, connections, sandbox, warehouse_path, leads_trials_dag
):
    write_warehouse(
        warehouse_path,
        leads=[
            lead("L_before", updated_at=T("2025-02-28 23:59:59")),
            lead("L_first", updated_at=T("2025-03-01 00:00:00")),
            lead("L_last", updated_at=T("2025-03-01 23:59:59")),
            lead("L_after", updated_at=T("2025-03-02 00:00:00")),
        ],
        plans=[plan("P1", updated_at=T("2025-03-01 05:00"))],
    )

    # `dag.test(logical_date=D)` runs the interval that ends at D (as `airflow dags test DAG D` does)
    dag_run = leads_trials_dag.test(
        logical_date=datetime.fromisoformat("2025-03-02T00:00:00+00:00"), run_conf=DEFAULT_CONF
    )

    assert dag_run.state == "success"
    interval = (dag_run.data_interval_start, dag_run.data_interval_end)
    assert [moment.isoformat() for moment in interval] == [
        "2025-03-01T00:00:00+00:00",
        "2025-03-02T00:00:00+00:00",
    ]
    row = run_row(warehouse_path, dag_run.run_id)
    assert (row["window_start"], row["window_end"], row["full_refresh"]) == (
        T("2025-03-01 00:00"),
        T("2025-03-02 00:00"),
        False,
    )
    assert set(synced_account(sandbox.state)["customers"]) == {"L_first", "L_last"}


@pytest.mark.slow
def test_airflow_backfill_create_accepts_the_dag_and_gives_each_day_a_one_day_interval(tmp_path):
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }

    def airflow(*args: str) -> str:
        done = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (
            f"airflow {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    airflow("db", "migrate")
    airflow("dags", "reserialize")
    airflow(
        "backfill", "create", "--dag-id", "chartmogul_leads_trials",
        "--from-date", "2025-01-01", "--to-date", "2025-01-30",
    )  # fmt: skip

    import sqlite3

    with sqlite3.connect(home / "airflow.db") as connection:
        runs = connection.execute(
            "SELECT run_type, data_interval_start, data_interval_end FROM dag_run "
            "WHERE dag_id = 'chartmogul_leads_trials' ORDER BY data_interval_start"
        ).fetchall()
    assert len(runs) == 30
    assert {run_type for run_type, _, _ in runs} == {"backfill"}
    starts = [datetime.fromisoformat(start[:19]) for _, start, _ in runs]
    assert starts == [datetime(2025, 1, 1) + timedelta(days=n) for n in range(30)]
    assert all(
        datetime.fromisoformat(end[:19]) - datetime.fromisoformat(start[:19]) == timedelta(days=1)
        for _, start, end in runs
    )


# ---- 2. a load killed mid-way resumes ----------------------------------------------------------------

AIRFLOW = REPO / ".venv" / "bin" / "airflow"


def start_dags_test(warehouse_path, sandbox_url: str, **env: str) -> subprocess.Popen:
    """`airflow dags test chartmogul_leads_trials` with a full refresh, in its own process group."""
    environment = {
        **os.environ,
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(
            {
                "conn_type": "chartmogul",
                "host": sandbox_url,
                "password": API_KEY,
                "extra": {"requests_per_second": 150},
            }
        ),
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps({"conn_type": "duckdb", "host": str(warehouse_path)}),
        "MOGULFLOW_TASK_RETRIES": "0",
        **env,
    }
    return subprocess.Popen(
        [
            str(AIRFLOW),
            "dags",
            "test",
            "chartmogul_leads_trials",
            "--conf",
            json.dumps({"full_refresh": True}),
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_when(process: subprocess.Popen, ready, *, timeout: float = 300.0) -> None:
    """SIGKILL the whole process group as soon as `ready()` holds; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace")[-3000:]
            pytest.fail(f"the run ended (exit {process.returncode}) before it could be killed:\n{output}")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("the load never reached the point where the test kills it")


@dataclass(frozen=True)
class SandboxFreeze:
    frozen: threading.Event  # the sandbox is frozen at the point asked for
    let_go: threading.Event  # set it to let the sandbox go on


def freeze_sandbox(monkeypatch, sandbox, method: str, reached, *, after: bool = False) -> SandboxFreeze:
    """Freeze the sandbox in the first call of its state's `method` for which `reached()` holds:
    before the call, or `after` it (before its answer goes out). One event loop serves the sandbox,
    so nothing else happens there until `let_go`: the run is caught at that point whatever its pace.
    """
    freeze = SandboxFreeze(threading.Event(), threading.Event())
    call = getattr(sandbox.state, method)

    def hold_once() -> None:
        if not freeze.frozen.is_set() and reached():
            freeze.frozen.set()
            freeze.let_go.wait()

    def frozen_call(*args, **kwargs):
        if not after:
            hold_once()
        answer = call(*args, **kwargs)
        if after:
            hold_once()
        return answer

    monkeypatch.setattr(sandbox.state, method, frozen_call)
    return freeze


def count_in_leads_source(sandbox, kind: str) -> int:
    """How many customers or invoices the Leads data source holds (0 before it exists)."""
    source = sandbox.state.data_source_by_name("Leads")
    if source is None:
        return 0
    if kind == "customers":
        return len(sandbox.state.customers(source["uuid"]))
    return len(sandbox.state.invoices(data_source_uuid=source["uuid"]))


def varied_leads_with_trials(count: int):
    """`count` valid leads, one trial each and a second trial for every tenth; every third lead has
    no dates of its own (its trial dates it), every fourth no e-mail."""
    leads, trials = [], []
    for i in range(count):
        moment = datetime(2025, 2, 1) + timedelta(hours=7 * i)
        dates = (
            {"lead_created_at": None, "free_trial_started_at": None}
            if i % 3 == 0
            else {"lead_created_at": moment, "free_trial_started_at": moment + timedelta(hours=1)}
        )
        leads.append(
            lead(
                f"L{i:04d}",
                company_name=f"Company {i}",
                email=None if i % 4 == 0 else f"owner{i}@company{i}.example",
                updated_at=moment + timedelta(hours=2),
                **dates,
            )
        )
        for n in range(2 if i % 10 == 0 else 1):
            started = moment + timedelta(hours=1, days=31 * n)
            trials.append(
                trial(
                    f"T{i:04d}-{n}",
                    lead_id=f"L{i:04d}",
                    plan_id=f"P{i % 3}",
                    subscription_id=None if i % 2 else f"S{i:04d}-{n}",
                    started_at=started,
                    ends_at=started + timedelta(days=14),
                    amount_in_cents=0 if i % 5 else 1900,
                    updated_at=started + timedelta(hours=1),
                )
            )
    return leads, trials


KILL_LEADS = 300


@pytest.fixture(scope="module")
def kill_sample(tmp_path_factory):
    """A warehouse of 300 leads and what an uninterrupted full refresh makes of it."""
    folder = tmp_path_factory.mktemp("kill_sample")
    path = folder / "sample.duckdb"
    leads, trials = varied_leads_with_trials(KILL_LEADS)
    write_warehouse(
        path, leads=leads, plans=[plan(f"P{k}", name=f"Plan {k}") for k in range(3)], trials=trials
    )
    reference = folder / "reference.duckdb"
    reference.write_bytes(path.read_bytes())
    with SandboxServer(port=0) as sandbox, sandbox_client(sandbox.url) as client:
        run_sync_directly(reference, client, run_id="uninterrupted", full_refresh=True)
        expected = synced_account(sandbox.state)
    assert len(expected["customers"]) == KILL_LEADS
    assert len(expected["invoices"]) == len(trials)
    return path, expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bulk_threshold", "frozen_in", "after", "kill_when_sandbox_has"),
    [
        # past the first checkpoint (200 rows): some writes are recorded in the sync state, some not
        pytest.param(
            "0", "create_customer_from_body", False, lambda customers, invoices: customers >= 250,
            id="per-object-customers",
        ),
        pytest.param(
            "0", "import_invoices", False, lambda customers, invoices: invoices >= 250,
            id="per-object-invoices",
        ),
        # the JSON import has landed, the task has not read its outcome back yet
        pytest.param(
            "100", "get_json_import", True, lambda customers, invoices: customers > 0, id="bulk-customers"
        ),
    ],
)  # fmt: skip
def test_load_killed_mid_way_and_run_again_ends_with_every_row_exactly_once(
    airflow_db,
    monkeypatch,
    tmp_path,
    kill_sample,
    leads_trials_dag,
    bulk_threshold,
    frozen_in,
    after,
    kill_when_sandbox_has,
):
    sample, expected = kill_sample
    warehouse_path = tmp_path / "warehouse.duckdb"
    warehouse_path.write_bytes(sample.read_bytes())
    with SandboxServer(port=0, faults=Faults(latency_seconds=0.02)) as sandbox:
        freeze = freeze_sandbox(
            monkeypatch,
            sandbox,
            frozen_in,
            lambda: kill_when_sandbox_has(
                count_in_leads_source(sandbox, "customers"), count_in_leads_source(sandbox, "invoices")
            ),
            after=after,
        )
        killed = start_dags_test(warehouse_path, sandbox.url, MOGULFLOW_BULK_THRESHOLD=bulk_threshold)
        try:
            kill_when(killed, freeze.frozen.is_set)
        finally:
            freeze.let_go.set()  # what the killed run had in flight lands now, its answer lost
        at_kill = {k: count_in_leads_source(sandbox, k) for k in ("customers", "invoices")}
        assert at_kill["customers"] + at_kill["invoices"] < len(expected["customers"]) + len(
            expected["invoices"]
        )

        # the same DAG again, this time to the end (in-process: the killed one held the DuckDB lock)
        set_connections(monkeypatch, sandbox.url, warehouse_path)
        monkeypatch.setenv("MOGULFLOW_BULK_THRESHOLD", bulk_threshold)
        sandbox.set_faults(Faults())
        again = run_dag(leads_trials_dag, full_refresh=True)

        assert again.state == "success"
        account = synced_account(sandbox.state)
        ds = leads_source(sandbox)
        customer_uuids = {c["external_id"]: c["uuid"] for c in sandbox.state.customers(ds)}
        invoice_uuids = {i["external_id"]: i["uuid"] for i in sandbox.state.invoices(data_source_uuid=ds)}
    assert duplicated(account) == {"customers": [], "plans": [], "invoices": []}
    assert account == expected
    leads_state = {
        external_id: (uuid, status) for _, external_id, uuid, status, _ in sync_state(warehouse_path, "lead")
    }
    assert leads_state == {external_id: (uuid, "synced") for external_id, uuid in customer_uuids.items()}
    trials_state = {
        external_id: (uuid, status) for _, external_id, uuid, status, _ in sync_state(warehouse_path, "trial")
    }
    assert set(trials_state) == set(invoice_uuids)
    assert {status for _, status in trials_state.values()} == {"synced"}
    # a JSON import answers without uuids, so a bulk-imported invoice may be recorded without one
    assert {k: u for k, (u, _) in trials_state.items() if u is not None} == {
        k: invoice_uuids[k] for k, (u, _) in trials_state.items() if u is not None
    }


# ---- a changed trial ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bulk_threshold", ["0", "1"], ids=["per-object", "bulk-first-import"])
def test_a_trial_changed_after_its_import_is_replaced_by_its_new_version(
    tmp_path, sandbox, monkeypatch, bulk_threshold
):
    monkeypatch.setenv("MOGULFLOW_BULK_THRESHOLD", bulk_threshold)
    warehouse_path = tmp_path / "warehouse.duckdb"
    leads, trials = varied_leads_with_trials(3)
    write_warehouse(warehouse_path, leads=leads, plans=[plan(f"P{k}") for k in range(3)], trials=trials)
    with sandbox_client(sandbox.url) as client:
        run_sync_directly(warehouse_path, client, run_id="first", full_refresh=True)
        with duckdb.connect(str(warehouse_path)) as connection:
            connection.execute(
                "UPDATE trials SET amount_in_cents = 4900, quantity = 3, updated_at = ? "
                "WHERE trial_id = 'T0001-0'",
                [T("2025-06-01 00:00")],
            )
        summary = run_sync_directly(warehouse_path, client, run_id="second", full_refresh=True)

    invoices = synced_account(sandbox.state)["invoices"]
    assert duplicated({"invoices": invoices}) == {"invoices": []}
    [(_date, _currency, _customer, _owner, [line])] = invoices["T0001-0"]
    amount, quantity = line[LINE_ITEM_AMOUNT], line[LINE_ITEM_QUANTITY]
    assert (amount, quantity) == (4900, 3)
    assert summary.counts[Entity.TRIAL].updated == 1
