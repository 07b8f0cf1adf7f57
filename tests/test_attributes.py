"""Lead attributes and tags (CONTRACT.md, "Lead attributes and tags"), against the sandbox over HTTP.

Each test arranges a DuckDB warehouse with builder rows, runs the DAG's steps (`run_sync_directly`,
as `chartmogul_leads_trials` wires them) and looks at what the sandbox's customers hold, the
requests it saw and mogulflow's tables.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd
import pytest
from builders import lead
from direct_sync import run_sync_directly, sandbox_client
from repo_paths import REPO

from mogulflow.values.entities import Entity

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
FIRST = datetime(2025, 3, 2, 10, 0)  # the builder leads' updated_at
LATER = datetime(2025, 4, 1, 8, 0)
APRIL_FIRST = {"start": "2025-04-01T00:00:00Z", "end": "2025-04-02T00:00:00Z"}


def attribute(lead_id: str, key: str, value: object, kind: str = "String", at: datetime = FIRST) -> tuple:
    return (lead_id, key, kind, None if value is None else str(value), at)


def tag(lead_id: str, name: str, present: bool = True, at: datetime = FIRST) -> tuple:
    return (lead_id, name, present, at)


def write_warehouse(path, *, leads=("L1", "L2"), attributes=(), tags=(), with_tables=True) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        frame = pd.DataFrame([lead(lead_id, company_name=f"Company {lead_id}") for lead_id in leads])
        connection.register("rows", frame)
        connection.execute("INSERT INTO leads SELECT * FROM rows")
        connection.unregister("rows")
        if not with_tables:
            return
        connection.execute(
            "CREATE TABLE lead_attributes "
            "(lead_id TEXT, key TEXT, type TEXT, value TEXT, updated_at TIMESTAMP)"
        )
        connection.execute(
            "CREATE TABLE lead_tags (lead_id TEXT, tag TEXT, present BOOLEAN, updated_at TIMESTAMP)"
        )
        for row in attributes:
            connection.execute("INSERT INTO lead_attributes VALUES (?, ?, ?, ?, ?)", list(row))
        for row in tags:
            connection.execute("INSERT INTO lead_tags VALUES (?, ?, ?, ?)", list(row))


def execute(path, sql: str, *params: object) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute(sql, list(params))


def query(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def held(sandbox, lead_id: str) -> tuple[dict, list]:
    """(custom attributes, tags) of the lead's customer in the sandbox."""
    (customer,) = [c for c in sandbox.state.customers() if c["external_id"] == lead_id]
    return customer["attributes"]["custom"], customer["attributes"]["tags"]


def uuid_of(sandbox, lead_id: str) -> str:
    return next(c["uuid"] for c in sandbox.state.customers() if c["external_id"] == lead_id)


def writes_since(sandbox, seq: int) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sandbox.requests if r.seq > seq and r.method in WRITES]


def last_seq(sandbox) -> int:
    return max((r.seq for r in sandbox.requests), default=0)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def client(sandbox):
    with sandbox_client(sandbox.url) as client:
        yield client


ROWS = {
    "attributes": [
        attribute("L1", "lead_source", "ads"),
        attribute("L1", "seats", 12, "integer"),
        attribute("L1", "first_touch", "2025-02-01T09:30:00Z", "Timestamp"),
        attribute("L2", "lead_source", "seo"),
        attribute("L2", "paid_ads", "TRUE", "Boolean"),
    ],
    "tags": [tag("L1", "vip"), tag("L2", "newsletter"), tag("L2", "webinar")],
}


def test_new_customers_get_their_attributes_and_tags_in_the_request_that_creates_them(sandbox, client, path):
    write_warehouse(path, **ROWS)

    summary = run_sync_directly(path, client, run_id="first", full_refresh=True)

    assert held(sandbox, "L1") == (
        {"lead_source": "ads", "seats": 12, "first_touch": "2025-02-01T09:30:00.000Z"},
        ["vip"],
    )
    assert held(sandbox, "L2") == ({"lead_source": "seo", "paid_ads": True}, ["newsletter", "webinar"])
    assert [p for _, p in writes_since(sandbox, 0) if "/attributes" in p] == []  # carried by the creates
    assert summary.counts[Entity.ATTRIBUTE].created == 5 and summary.counts[Entity.TAG].created == 3


def test_a_rerun_writes_nothing_and_counts_every_row_unchanged(sandbox, client, path):
    write_warehouse(path, **ROWS)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    seq = last_seq(sandbox)

    summary = run_sync_directly(path, client, run_id="again", full_refresh=True)

    assert writes_since(sandbox, seq) == []
    assert summary.counts[Entity.ATTRIBUTE].unchanged == 5 and summary.counts[Entity.TAG].unchanged == 3


def test_a_window_sends_only_the_changed_keys_one_request_per_customer_and_kind(sandbox, client, path):
    write_warehouse(path, **ROWS)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    execute(path, "UPDATE lead_attributes SET value = '40', updated_at = ? WHERE key = 'seats'", LATER)
    execute(
        path,
        "UPDATE lead_attributes SET value = 'events', updated_at = ? "
        "WHERE key = 'lead_source' AND lead_id = 'L1'",
        LATER,
    )
    seq = last_seq(sandbox)

    summary = run_sync_directly(path, client, run_id="april", **APRIL_FIRST)

    assert writes_since(sandbox, seq) == [
        ("PUT", f"/v1/customers/{uuid_of(sandbox, 'L1')}/attributes/custom")
    ]
    assert held(sandbox, "L1")[0] == {
        "lead_source": "events",
        "seats": 40,
        "first_touch": "2025-02-01T09:30:00.000Z",
    }
    counts = summary.counts[Entity.ATTRIBUTE]
    assert (counts.extracted, counts.updated) == (2, 2)


def test_a_null_value_removes_the_key_and_present_false_removes_the_tag(sandbox, client, path):
    write_warehouse(path, **ROWS)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    execute(
        path,
        "UPDATE lead_attributes SET value = NULL, type = NULL, updated_at = ? "  # a removal needs no type
        "WHERE lead_id = 'L2' AND key = 'paid_ads'",
        LATER,
    )
    execute(path, "UPDATE lead_tags SET present = false, updated_at = ? WHERE tag = 'webinar'", LATER)

    summary = run_sync_directly(path, client, run_id="april", **APRIL_FIRST)

    assert held(sandbox, "L2") == ({"lead_source": "seo"}, ["newsletter"])
    assert summary.counts[Entity.ATTRIBUTE].updated == 1 and summary.counts[Entity.TAG].updated == 1


def test_a_full_refresh_removes_what_no_row_names_any_more(sandbox, client, path):
    write_warehouse(path, **ROWS)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    execute(path, "DELETE FROM lead_attributes WHERE lead_id = 'L1' AND key = 'seats'")
    execute(path, "DELETE FROM lead_tags WHERE lead_id = 'L1'")

    summary = run_sync_directly(path, client, run_id="refresh", full_refresh=True)

    assert held(sandbox, "L1") == ({"lead_source": "ads", "first_touch": "2025-02-01T09:30:00.000Z"}, [])
    assert summary.counts[Entity.ATTRIBUTE].extracted == 4  # the removals stand for no extracted row
    assert summary.counts[Entity.ATTRIBUTE].accounted == 4


def test_attributes_and_tags_someone_else_set_are_never_changed_or_removed(sandbox, client, path):
    write_warehouse(path, **ROWS)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    l2 = uuid_of(sandbox, "L2")
    client.add_custom_attributes(l2, [{"type": "String", "key": "owner", "value": "ana"}])
    client.add_custom_attributes(l2, [{"type": "String", "key": "region", "value": "EMEA"}])
    client.add_tags(l2, ["key_account", "newsletter_2"])
    # the warehouse now names one of them with another value, removes all its own, and names the tag
    execute(path, "DELETE FROM lead_attributes WHERE lead_id = 'L2'")
    execute(path, "DELETE FROM lead_tags WHERE lead_id = 'L2'")
    execute(path, "INSERT INTO lead_attributes VALUES ('L2', 'region', 'String', 'AMER', ?)", LATER)
    execute(path, "INSERT INTO lead_attributes VALUES ('L2', 'owner', 'String', NULL, ?)", LATER)
    execute(path, "INSERT INTO lead_tags VALUES ('L2', 'key_account', false, ?)", LATER)

    summary = run_sync_directly(path, client, run_id="refresh", full_refresh=True, max_reject_ratio=1)

    custom, tags = held(sandbox, "L2")
    assert custom == {"owner": "ana", "region": "EMEA"}  # ours (lead_source, paid_ads) gone, theirs kept
    assert tags == ["key_account", "newsletter_2"]
    counts = summary.counts[Entity.ATTRIBUTE]
    assert counts.failed == 1  # region: the warehouse's value is not set over another's
    assert summary.counts[Entity.TAG].unchanged == 2  # L1 vip as it was; key_account is not ours to remove


def test_without_the_tables_nothing_changes(sandbox, client, path):
    write_warehouse(path, with_tables=False)

    summary = run_sync_directly(path, client, run_id="first", full_refresh=True)

    assert Entity.ATTRIBUTE not in summary.counts and Entity.TAG not in summary.counts
    assert summary.outcome == "success"
    assert [p for _, p in writes_since(sandbox, 0) if "/attributes" in p] == []
    assert query(path, "SELECT attributes_extracted, tags_extracted FROM mogulflow_runs") == [(0, 0)]


def test_rows_breaking_a_rule_are_rejected_with_their_reason_and_never_sent(sandbox, client, path):
    bad = [
        attribute("L1", "seat_count", "twelve", "Integer"),
        attribute("L1", "lead-source", "ads"),
        attribute("L1", "ratio", "1,5", "Decimal"),
        attribute("L1", "flag", "yes", "Boolean"),
        attribute("L1", "seen", "2099-01-01T00:00:00Z", "Timestamp"),
        attribute("L1", "note", "x" * 256),
        attribute("L1", "kind", "x", "Text"),
    ]
    write_warehouse(path, attributes=[*ROWS["attributes"], *bad], tags=[*ROWS["tags"], tag("L1", "  ")])

    run_sync_directly(path, client, run_id="first", full_refresh=True, max_reject_ratio=1)

    rejects = query(path, "SELECT entity, source_id, reason FROM mogulflow_rejects ORDER BY entity, reason")
    assert [(entity, source) for entity, source, _ in rejects] == [("attribute", "L1")] * 7 + [("tag", "L1")]
    reasons = " | ".join(reason for _, _, reason in rejects)
    for words in (
        "'twelve'",
        "letters, digits and underscores",
        "'1,5'",
        "'yes'",
        "'Text'",
        "tag: must be present",
    ):
        assert words in reasons
    assert set(held(sandbox, "L1")[0]) == {"lead_source", "seats", "first_touch"}


def test_rows_of_a_lead_not_known_yet_wait_for_it(sandbox, client, path):
    write_warehouse(path, leads=("L1",), attributes=[attribute("L3", "lead_source", "ads", at=LATER)])
    first = run_sync_directly(path, client, run_id="april", max_reject_ratio=1, **APRIL_FIRST)
    assert first.counts[Entity.ATTRIBUTE].rejected == 1

    execute(
        path,
        "INSERT INTO leads SELECT * REPLACE ('L3' AS lead_id, TIMESTAMP '2025-04-02 09:00' AS updated_at) "
        "FROM leads",
    )
    later = run_sync_directly(
        path, client, run_id="next day", start="2025-04-02T00:00:00Z", end="2025-04-03T00:00:00Z"
    )

    assert held(sandbox, "L3")[0] == {"lead_source": "ads"}
    assert later.counts[Entity.ATTRIBUTE].created == 1
    again = run_sync_directly(
        path, client, run_id="day after", start="2025-04-03T00:00:00Z", end="2025-04-04T00:00:00Z"
    )
    assert again.counts[Entity.ATTRIBUTE].extracted == 0  # no longer waiting


def test_many_new_customers_carry_theirs_in_the_json_imports(sandbox, client, path, monkeypatch):
    monkeypatch.setenv("MOGULFLOW_BULK_THRESHOLD", "2")
    leads = [f"L{i}" for i in range(1, 8)]
    write_warehouse(
        path,
        leads=leads,
        attributes=[attribute(lead_id, "lead_source", "ads") for lead_id in leads],
        tags=[tag(lead_id, "trial") for lead_id in leads],
    )

    summary = run_sync_directly(path, client, run_id="first", full_refresh=True)

    assert all(held(sandbox, lead_id) == ({"lead_source": "ads"}, ["trial"]) for lead_id in leads)
    assert [p for _, p in writes_since(sandbox, 0) if "/attributes" in p] == []
    assert summary.counts[Entity.ATTRIBUTE].created == 7 and summary.counts[Entity.TAG].created == 7


# ---- the real DAG ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leads_trials_dag():
    from airflow.dag_processing.dagbag import DagBag

    dag_file = REPO / "dags" / "chartmogul_leads_trials.py"
    return DagBag(dag_folder=str(dag_file)).dags["chartmogul_leads_trials"]


@pytest.mark.slow
def test_the_dag_syncs_attributes_and_tags_and_records_their_counts(
    airflow_db, monkeypatch, sandbox, path, leads_trials_dag
):
    from test_sync_engine import DEFAULT_CONF, set_connections

    set_connections(monkeypatch, sandbox.url, path)
    write_warehouse(path, **ROWS)

    first = leads_trials_dag.test(run_conf={**DEFAULT_CONF, "full_refresh": True})
    execute(path, "UPDATE lead_attributes SET value = '40', updated_at = ? WHERE key = 'seats'", LATER)
    second = leads_trials_dag.test(run_conf={**DEFAULT_CONF, "full_refresh": True, "dry_run": True})
    third = leads_trials_dag.test(run_conf={**DEFAULT_CONF, "full_refresh": True})

    assert [run.state for run in (first, second, third)] == ["success"] * 3
    assert held(sandbox, "L1")[0]["seats"] == 40
    rows = query(
        path,
        "SELECT dry_run, attributes_extracted, attributes_created, attributes_updated, attributes_unchanged, "
        "tags_extracted, tags_created, tags_unchanged FROM mogulflow_runs ORDER BY started_at",
    )
    assert rows == [(False, 5, 5, 0, 0, 3, 3, 0), (True, 5, 0, 1, 4, 3, 0, 3), (False, 5, 0, 1, 4, 3, 0, 3)]


# ---- reconciliation ------------------------------------------------------------------------------


def reconcile_run(path, client, *, run_id: str, resend: bool = False):
    from datetime import UTC

    from mogulflow.reconcile.run import ReconcileRequest, run_reconciliation
    from mogulflow.warehouse.connection import Warehouse

    warehouse = Warehouse.open_duckdb(str(path))
    try:
        request = ReconcileRequest(run_id, "chartmogul_reconcile", "Leads", resend, datetime.now(UTC))
        return run_reconciliation(warehouse, client, request)
    finally:
        warehouse.close()


def test_the_reconciliation_finds_owned_attributes_and_tags_that_drifted_and_resend_repairs_them(
    sandbox, client, path
):
    write_warehouse(path, **ROWS)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    execute(path, "UPDATE lead_tags SET present = false, updated_at = ? WHERE tag = 'webinar'", LATER)
    run_sync_directly(path, client, run_id="april", **APRIL_FIRST)
    l1, l2 = uuid_of(sandbox, "L1"), uuid_of(sandbox, "L2")
    # drift made in ChartMogul: one of ours removed, one changed, a removed tag back, others' added
    client.remove_custom_attributes(l1, ["seats"])
    client.update_custom_attributes(l2, {"lead_source": "billboard"})
    client.add_tags(l2, ["webinar", "someone_elses"])
    client.add_custom_attributes(l2, [{"type": "String", "key": "owner", "value": "ana"}])
    seq = last_seq(sandbox)

    report = reconcile_run(path, client, run_id="check")

    assert writes_since(sandbox, seq) == []
    rows = query(
        path,
        "SELECT entity, external_id, kind, field, warehouse_value, chartmogul_value "
        "FROM mogulflow_reconciliation WHERE run_id = 'check' AND entity IN ('attribute', 'tag') "
        "ORDER BY entity, kind",
    )
    assert rows == [
        ("attribute", "L2", "different", "lead_source", "seo", "billboard"),
        ("attribute", "L1", "missing", "seats", "12", None),
        ("tag", "L2", "extra", "webinar", None, "true"),
    ]
    assert report.outcome == "failed"

    reconcile_run(path, client, run_id="resend", resend=True)
    run_sync_directly(path, client, run_id="repair", start="2025-11-01T00:00:00Z", end="2025-11-02T00:00:00Z")

    assert held(sandbox, "L1")[0]["seats"] == 12
    assert held(sandbox, "L2") == (
        {"lead_source": "seo", "paid_ads": True, "owner": "ana"},
        ["newsletter", "someone_elses"],
    )
    assert reconcile_run(path, client, run_id="after").outcome == "success"


# ---- the monitoring page's queries ------------------------------------------------------------------


def test_the_funnel_splits_by_the_attribute_chosen_and_runs_show_attribute_counts(sandbox, client, tmp_path):
    from datetime import date

    from mogulflow.monitor import queries
    from mogulflow.warehouse.connection import Warehouse
    from mogulflow_demo.sample_warehouse import build_sample_warehouse

    path = tmp_path / "sample.duckdb"
    build_sample_warehouse(path, leads=1000, attributes=True)
    run_sync_directly(path, client, run_id="first", full_refresh=True)
    period = queries.Period(date(2025, 1, 1), date(2025, 11, 1))
    warehouse = Warehouse.open_duckdb(str(path))
    try:
        keys = queries.attribute_keys(warehouse)
        split = queries.funnel_by_attribute(warehouse, period, key="lead_source", grain="week")
        funnel = queries.lead_funnel(warehouse, period, grain="week")
        (run,) = queries.recent_runs(warehouse, period=queries.Period(date(2020, 1, 1), date(2100, 1, 1)))
    finally:
        warehouse.close()

    assert keys == ("company_size", "lead_source", "plan_tier", "sales_owner", "utm_campaign")
    assert set(split.values) <= {"ads", "seo", "referral", "event", "outbound", "partner", "(none)"}
    for measure, total in (("leads", funnel.totals.leads), ("conversions", funnel.totals.conversions)):
        assert sum(sum(counts) for counts in split.series[measure].values()) == total
    weekly = [sum(split.series["leads"][v][i] for v in split.values) for i in range(len(split.labels))]
    assert weekly == [bucket.leads for bucket in funnel.buckets]
    assert run.counts["attribute"].created == run.counts["attribute"].extracted > 0
    assert run.counts["tag"].created > 0


def test_when_json_imports_do_not_carry_them_the_attribute_steps_add_them(sandbox, client, path, monkeypatch):
    from mogulflow.sync import attributes as attribute_steps

    monkeypatch.setenv("MOGULFLOW_BULK_THRESHOLD", "2")
    monkeypatch.setattr(attribute_steps, "CARRY_IN_JSON_IMPORTS", False)
    leads = [f"L{i}" for i in range(1, 6)]
    write_warehouse(
        path,
        leads=leads,
        attributes=[attribute(lead_id, "lead_source", "ads") for lead_id in leads],
        tags=[tag(lead_id, "trial") for lead_id in leads],
    )

    summary = run_sync_directly(path, client, run_id="first", full_refresh=True)

    assert all(held(sandbox, lead_id) == ({"lead_source": "ads"}, ["trial"]) for lead_id in leads)
    posts = [p for m, p in writes_since(sandbox, 0) if "/attributes" in p and m == "POST"]
    assert len(posts) == 10  # one per customer and kind
    assert summary.counts[Entity.ATTRIBUTE].created == 5 and summary.counts[Entity.TAG].created == 5
