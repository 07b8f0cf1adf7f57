# ruff: noqa: E501  (the fixture rows read best as one table row per line)
"""The monitoring page's numbers, against values worked out by hand on a small DuckDB warehouse.

The period is the two weeks starting Monday 2025-03-03 (until 2025-03-17, exclusive).

Leads (lead date as ChartMogul gets it): A 03-03 (its older duplicate says 02-01 and loses), B 03-05
(from free_trial_started_at), C 03-10 (from its trial), D 02-20 (before the period), E 03-11.
Trials: T1 A 03-04 free, T2 B 03-05 paid (its older duplicate is free and loses), T3 C 03-10 free,
T4 D 03-12 paid, T5 A 03-11 free (A's second trial), T6 E 03-20 (after the period), T9 names an
unknown lead.
Conversions: A on 03-13 12:00 (10.125 days after 03-03 09:00), D on 03-14 (22 days after 02-20),
B on 04-01 (after the period: it still makes B's trial a converted one).

Week of 03-03: leads A, B; trials T1 free, T2 paid; first trials A, B, both converted; no conversion.
Week of 03-10: leads C, E; trials T3, T5 free, T4 paid; first trials C, D, D converted; conversions
A and D: 32.125 days in all, 16.0625 on average.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
from repo_paths import REPO

from mogulflow.monitor import queries
from mogulflow.monitor.queries import Period
from mogulflow.values.entities import Entity, Window
from mogulflow.values.rejected_rows import RejectedRow
from mogulflow.values.run_summary import EntityCounts, RunOutcome, RunSummary
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.own_tables import ensure_tables
from mogulflow.warehouse.run_records import record_rejects, record_run
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus, save_state

T = datetime.fromisoformat
PERIOD = Period(since=date(2025, 3, 3), until=date(2025, 3, 17))
LEADS_DAG = "chartmogul_leads_trials"
MERGE_DAG = "chartmogul_merge_converted_leads"

LEADS = [
    ("A", "Acme", None, "DE", None, None, None, T("2025-03-03 09:00"), T("2025-03-04 10:00"), T("2025-03-04 06:00")),
    ("A", "Acme old", None, "DE", None, None, None, T("2025-02-01 00:00"), None, T("2025-03-01 00:00")),
    ("B", "Beta", None, "GB", None, None, None, None, T("2025-03-05 10:00"), T("2025-03-05 11:00")),
    ("C", "Gamma", None, "US", None, None, None, None, None, T("2025-03-10 00:00")),
    ("D", "Delta", None, "FR", None, None, None, T("2025-02-20 00:00"), None, T("2025-02-20 00:00")),
    ("E", "Eta", None, "NL", None, None, None, T("2025-03-11 08:00"), None, T("2025-03-11 08:00")),
]  # fmt: skip
TRIALS = [
    ("T1", "A", "P1", None, T("2025-03-04 10:00"), T("2025-03-18 10:00"), 0, "USD", 1, T("2025-03-04 10:00")),
    ("T2", "B", "P1", None, T("2025-03-05 10:00"), T("2025-03-19 10:00"), 1500, "USD", 1, T("2025-03-05 12:00")),
    ("T2", "B", "P1", None, T("2025-03-05 10:00"), T("2025-03-19 10:00"), 0, "USD", 1, T("2025-03-05 10:00")),
    ("T3", "C", "P1", None, T("2025-03-10 00:00"), T("2025-03-24 00:00"), 0, "USD", 1, T("2025-03-10 00:00")),
    ("T4", "D", "P1", None, T("2025-03-12 00:00"), T("2025-03-26 00:00"), 900, "EUR", 1, T("2025-03-12 00:00")),
    ("T5", "A", "P1", None, T("2025-03-11 00:00"), T("2025-03-25 00:00"), 0, "USD", 1, T("2025-03-11 00:00")),
    ("T6", "E", "P1", None, T("2025-03-20 00:00"), T("2025-04-03 00:00"), 0, "USD", 1, T("2025-03-20 00:00")),
    ("T9", "L9", "P1", None, T("2025-02-01 00:00"), T("2025-02-15 00:00"), 0, "USD", 1, T("2025-03-04 12:00")),
]  # fmt: skip
CONVERSIONS = [
    ("A", "ds_billing", "cus_a", T("2025-03-13 12:00")),
    ("D", "ds_billing", "cus_d", T("2025-03-14 00:00")),
    ("B", "ds_billing", "cus_b", T("2025-04-01 00:00")),
]

RUN_1 = "scheduled__2025-03-04T00:00:00+00:00"
MERGE_RUN = "manual__2025-03-14T02:00:00+00:00"
OTHER_SOURCE_RUN = "manual__2025-03-06T00:00:00+00:00"
FEBRUARY_RUN = "scheduled__2025-02-01T00:00:00+00:00"
EMAIL_RULE = "email: must be a valid email address"
COUNTRY_RULE = "country: must be an ISO 3166-1 alpha-2 country code"
UNKNOWN_LEAD_RULE = "lead_id: must name a lead that is valid or was synced before"


def _run(run_id, dag_id, started, finished, outcome, counts, *, window=None) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        dag_id=dag_id,
        window=window or Window(None, None, full_refresh=True),
        started_at=started,
        finished_at=finished,
        dry_run=False,
        outcome=outcome,
        counts=counts,
        message="",
    )


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path) -> Warehouse:
    """The fixture rows in DuckDB, and in a throwaway PostgreSQL database: the same SQL serves both."""
    if request.param == "duckdb":
        warehouse = Warehouse.open_duckdb(str(tmp_path / "monitor.duckdb"))
    else:
        import psycopg

        dsn = request.getfixturevalue("postgres_database")
        warehouse = Warehouse(psycopg.connect(**dsn), "postgres")
    warehouse.execute_script((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
    lead_columns = ("lead_id", "company_name", "email", "country", "state", "city", "zip",
                    "lead_created_at", "free_trial_started_at", "updated_at")  # fmt: skip
    trial_columns = ("trial_id", "lead_id", "plan_id", "subscription_id", "started_at", "ends_at",
                     "amount_in_cents", "currency", "quantity", "updated_at")  # fmt: skip
    conversion_columns = (
        "lead_id",
        "billing_data_source_uuid",
        "billing_customer_external_id",
        "converted_at",
    )
    warehouse.insert_rows("leads", lead_columns, LEADS)
    warehouse.insert_rows("trials", trial_columns, TRIALS)
    warehouse.insert_rows("conversions", conversion_columns, CONVERSIONS)
    ensure_tables(warehouse)
    leads_counts = {
        Entity.LEAD: EntityCounts(extracted=5, created=3, unchanged=1, rejected=1),
        Entity.PLAN: EntityCounts(extracted=2, created=2),
        Entity.TRIAL: EntityCounts(extracted=4, created=2, rejected=2),
    }
    record_run(
        warehouse,
        _run(RUN_1, LEADS_DAG, T("2025-03-05 01:00"), T("2025-03-05 01:02:30"), RunOutcome.SUCCESS_WITH_REJECTS,
             leads_counts, window=Window(T("2025-03-04 00:00"), T("2025-03-05 00:00"))),
        details={"api_errors": {}},
        data_source=("Leads", "ds_1"),
    )  # fmt: skip
    record_run(
        warehouse,
        _run(MERGE_RUN, MERGE_DAG, T("2025-03-14 02:00"), T("2025-03-14 02:20"), RunOutcome.FAILED,
             {Entity.CONVERSION: EntityCounts(extracted=2, created=1, failed=1)}),
        details={"api_errors": {"conversion": [{"entity": "conversion", "external_id": "D", "message": "no paying customer", "status": None}]}},
        data_source=("Leads", "ds_1"),
    )  # fmt: skip
    record_run(
        warehouse,
        _run(OTHER_SOURCE_RUN, LEADS_DAG, T("2025-03-06 00:00"), T("2025-03-06 00:01"), RunOutcome.SUCCESS_WITH_REJECTS,
             {Entity.LEAD: EntityCounts(extracted=1, rejected=1)}),
        details={},
        data_source=("Other", "ds_2"),
    )  # fmt: skip
    record_run(
        warehouse,
        _run(FEBRUARY_RUN, LEADS_DAG, T("2025-02-02 00:00"), T("2025-02-02 00:01"), RunOutcome.SUCCESS_WITH_REJECTS,
             {Entity.LEAD: EntityCounts(extracted=1, rejected=1)}),
        details={},
        data_source=("Leads", "ds_1"),
    )  # fmt: skip
    record_rejects(
        warehouse,
        run_id=RUN_1,
        dag_id=LEADS_DAG,
        rejects=[
            RejectedRow(Entity.LEAD, "L5", f"{EMAIL_RULE} (found 'x'); {COUNTRY_RULE} (found 'XX')"),
            RejectedRow(Entity.TRIAL, "T9", f"{UNKNOWN_LEAD_RULE} (found 'L9')"),
            RejectedRow(Entity.TRIAL, "T8", f"{UNKNOWN_LEAD_RULE} (found 'L8')"),
        ],
        at=T("2025-03-05 01:00"),
    )
    record_rejects(
        warehouse,
        run_id=OTHER_SOURCE_RUN,
        dag_id=LEADS_DAG,
        rejects=[RejectedRow(Entity.LEAD, "L7", f"{EMAIL_RULE} (found 'y')")],
        at=T("2025-03-06 00:00"),
    )
    record_rejects(
        warehouse,
        run_id=FEBRUARY_RUN,
        dag_id=LEADS_DAG,
        rejects=[RejectedRow(Entity.LEAD, "L6", f"{EMAIL_RULE} (found 'z')")],
        at=T("2025-02-02 00:00"),
    )
    save_state(
        warehouse,
        [
            StateEntry(entity=Entity.LEAD, data_source_uuid="ds_1", external_id="A", status=SyncStatus.SYNCED,
                       synced_at=T("2025-03-05 01:01"), run_id=RUN_1, chartmogul_uuid="cus_A"),
            StateEntry(entity=Entity.TRIAL, data_source_uuid="ds_1", external_id="T9", status=SyncStatus.WAITING,
                       synced_at=T("2025-03-05 01:00"), run_id=RUN_1),
            StateEntry(entity=Entity.CONVERSION, data_source_uuid="ds_1", external_id="D", status=SyncStatus.FAILED,
                       synced_at=T("2025-03-14 02:20"), run_id=MERGE_RUN, payload={"error": "no paying customer"}),
        ],
    )  # fmt: skip
    yield warehouse
    warehouse.close()


def test_runs_of_the_period_and_data_source_newest_first_with_their_counts(warehouse):
    runs = queries.recent_runs(warehouse, PERIOD, data_source_uuid="ds_1")

    assert [r.run_id for r in runs] == [MERGE_RUN, RUN_1]
    merge, leads = runs
    assert set(merge.counts) == {"conversion"}
    assert merge.counts["conversion"] == EntityCounts(extracted=2, created=1, failed=1)
    assert merge.outcome == "failed"
    assert set(leads.counts) == {"lead", "plan", "trial"}
    assert leads.counts["lead"] == EntityCounts(extracted=5, created=3, unchanged=1, rejected=1)
    assert leads.counts["trial"].rejected == 2
    assert leads.window_start == T("2025-03-04 00:00") and leads.window_end == T("2025-03-05 00:00")
    assert leads.duration_seconds == 150.0


def test_runs_of_every_data_source_when_none_is_chosen(warehouse):
    runs = queries.recent_runs(warehouse, PERIOD)

    assert [r.run_id for r in runs] == [MERGE_RUN, OTHER_SOURCE_RUN, RUN_1]


def test_runs_of_one_dag(warehouse):
    assert [r.run_id for r in queries.recent_runs(warehouse, PERIOD, dag_id=MERGE_DAG)] == [MERGE_RUN]


def test_data_sources_most_recently_used_first(warehouse):
    assert queries.list_data_sources(warehouse) == (
        queries.DataSource("Leads", "ds_1"),
        queries.DataSource("Other", "ds_2"),
    )


def test_rejects_grouped_by_entity_and_rule_with_examples(warehouse):
    rejects = queries.rejects_by_rule(warehouse, PERIOD, data_source_uuid="ds_1")

    assert rejects.rows_by_entity == {"lead": 1, "trial": 2}
    assert rejects.total == 3
    groups = {(g.entity, g.rule): g for g in rejects.groups}
    assert set(groups) == {("lead", EMAIL_RULE), ("lead", COUNTRY_RULE), ("trial", UNKNOWN_LEAD_RULE)}
    unknown_lead = groups[("trial", UNKNOWN_LEAD_RULE)]
    assert (unknown_lead.rows, unknown_lead.ids) == (2, 2)
    assert sorted(e.source_id for e in unknown_lead.examples) == ["T8", "T9"]
    assert rejects.groups[0] is unknown_lead  # the biggest group first
    email = groups[("lead", EMAIL_RULE)]
    assert (email.rows, email.examples[0].source_id, email.examples[0].run_id) == (1, "L5", RUN_1)
    assert email.examples[0].reason.startswith(f"{EMAIL_RULE} (found 'x'); ")


def test_rejects_of_every_data_source_count_the_other_source_too(warehouse):
    rejects = queries.rejects_by_rule(warehouse, PERIOD)

    groups = {(g.entity, g.rule): g.rows for g in rejects.groups}
    assert groups[("lead", EMAIL_RULE)] == 2  # L5 and L7; L6 was rejected before the period
    assert rejects.rows_by_entity == {"lead": 2, "trial": 2}


def test_rejects_csv_holds_every_reject_of_the_period(warehouse):
    frames = list(queries.iter_rejects_csv_frames(warehouse, PERIOD, data_source_uuid="ds_1"))

    rows = [row for frame in frames for row in frame.itertuples(index=False)]
    assert list(frames[0].columns) == list(queries.REJECTS_CSV_COLUMNS)
    assert sorted(r.source_id for r in rows) == ["L5", "T8", "T9"]


def test_weekly_funnel_matches_the_hand_count(warehouse):
    funnel = queries.lead_funnel(warehouse, PERIOD, grain="week")

    first, second = funnel.buckets
    assert first.start == date(2025, 3, 3) and second.start == date(2025, 3, 10)
    assert (first.leads, first.free_trials, first.paid_trials) == (2, 1, 1)
    assert (first.trial_leads, first.converted_trial_leads, first.conversions) == (2, 2, 0)
    assert first.conversion_rate == 1.0 and first.average_cycle_days is None
    assert (second.leads, second.free_trials, second.paid_trials) == (2, 2, 1)
    assert (second.trial_leads, second.converted_trial_leads, second.conversions) == (2, 1, 2)
    assert second.conversion_rate == 0.5
    assert second.average_cycle_days == pytest.approx(16.0625)
    totals = funnel.totals
    assert (totals.leads, totals.free_trials, totals.paid_trials, totals.trials) == (4, 3, 2, 5)
    assert totals.conversion_rate == 0.75
    assert totals.average_cycle_days == pytest.approx(16.0625)


def test_daily_funnel_has_every_day_of_the_period(warehouse):
    funnel = queries.lead_funnel(warehouse, PERIOD, grain="day")

    assert len(funnel.buckets) == 14
    by_day = {b.start: b for b in funnel.buckets}
    assert (by_day[date(2025, 3, 5)].leads, by_day[date(2025, 3, 5)].paid_trials) == (1, 1)
    assert by_day[date(2025, 3, 13)].conversions == 1
    assert by_day[date(2025, 3, 13)].average_cycle_days == pytest.approx(10.125)
    assert by_day[date(2025, 3, 14)].average_cycle_days == pytest.approx(22.0)
    assert by_day[date(2025, 3, 6)] == queries.FunnelBucket(start=date(2025, 3, 6))
    assert funnel.totals.leads == 4


def test_no_reconciliation_until_one_has_run(warehouse):
    assert queries.latest_reconciliation(warehouse) == queries.Reconciliation(available=False)


def test_reconciliation_shows_the_latest_run_by_kind_with_examples(warehouse):
    rows = [
        ("old", "chartmogul_reconcile", "ds_1", "lead", "A", "missing", None, T("2025-03-01 00:00")),
        ("new", "chartmogul_reconcile", "ds_1", "lead", "A", "missing", None, T("2025-03-15 00:00")),
        ("new", "chartmogul_reconcile", "ds_1", "lead", "B", "missing", None, T("2025-03-15 00:00")),
        ("new", "chartmogul_reconcile", "ds_1", "lead", "C", "different", "lead_created_at", T("2025-03-15 00:00")),
        ("new", "chartmogul_reconcile", "ds_1", "trial", "T7", "extra", None, T("2025-03-15 00:00")),
        ("other", "chartmogul_reconcile", "ds_2", "lead", "Z", "missing", None, T("2025-03-16 00:00")),
    ]  # fmt: skip
    warehouse.insert_rows(
        "mogulflow_reconciliation",
        ("run_id", "dag_id", "data_source_uuid", "entity", "external_id", "kind", "field", "checked_at"),
        rows,
    )

    found = queries.latest_reconciliation(warehouse, data_source_uuid="ds_1")

    assert (found.available, found.run_id, found.total) == (True, "new", 4)
    assert [(g.entity, g.kind, g.field, g.rows, g.examples) for g in found.groups] == [
        ("lead", "different", "lead_created_at", 1, ("C",)),
        ("lead", "missing", None, 2, ("A", "B")),
        ("trial", "extra", None, 1, ("T7",)),
    ]


def test_a_reconciliation_without_drift_shows_as_agreeing_not_as_never_run(warehouse):
    record_run(
        warehouse,
        _run("reconciled", "chartmogul_reconcile", T("2025-03-16 06:00"), T("2025-03-16 06:01"), RunOutcome.SUCCESS,
             {Entity.LEAD: EntityCounts(extracted=4, unchanged=4)}),
        details={},
        data_source=("Leads", "ds_1"),
    )  # fmt: skip

    found = queries.latest_reconciliation(warehouse, data_source_uuid="ds_1")

    assert (found.available, found.run_id, found.total, found.groups) == (True, "reconciled", 0, ())
    assert not queries.latest_reconciliation(warehouse, data_source_uuid="ds_2").available


def test_lookup_of_a_trial_waiting_for_its_lead(warehouse):
    story = queries.look_up(warehouse, " T9 ", data_source_uuid="ds_1")

    assert story.source_rows["trials"]["lead_id"] == "L9"
    assert [(r.run_id, r.verdict) for r in story.runs] == [(RUN_1, "waiting")]
    assert UNKNOWN_LEAD_RULE in story.runs[0].detail and "'L9'" in story.runs[0].detail
    assert [(s.entity, s.status) for s in story.states] == [("trial", "waiting")]


def test_lookup_of_a_synced_lead_that_converted(warehouse):
    story = queries.look_up(warehouse, "A", data_source_uuid="ds_1")

    assert story.source_rows["leads"]["company_name"] == "Acme"  # the newest row
    assert story.trial_ids == ("T1", "T5")
    assert story.conversion["billing_customer_external_id"] == "cus_a"
    assert [(r.run_id, r.verdict) for r in story.runs] == [(RUN_1, "synced")]
    assert [(s.status, s.chartmogul_uuid) for s in story.states] == [("synced", "cus_A")]


def test_lookup_of_a_failed_merge_names_the_api_error(warehouse):
    story = queries.look_up(warehouse, "D", data_source_uuid="ds_1")

    assert [(r.run_id, r.verdict, r.detail) for r in story.runs] == [
        (MERGE_RUN, "failed", "no paying customer")
    ]
    assert [(s.entity, s.status, s.last_error) for s in story.states] == [
        ("conversion", "failed", "no paying customer")
    ]


def test_lookup_of_an_unknown_id_finds_nothing(warehouse):
    assert not queries.look_up(warehouse, "nope").found


def test_an_empty_warehouse_shows_nothing_and_does_not_fail(tmp_path):
    warehouse = Warehouse.open_duckdb(str(tmp_path / "empty.duckdb"))
    try:
        page = queries.overview(warehouse, PERIOD)
    finally:
        warehouse.close()

    assert (page.runs, page.rejects.groups, page.funnel.buckets) == ((), (), ())
    assert not page.has_runs_table and not page.reconciliation.available


def test_lookup_across_data_sources_counts_a_full_refresh_of_another_source(warehouse):
    story = queries.look_up(warehouse, "A")

    assert [(r.run_id, r.verdict) for r in story.runs] == [(OTHER_SOURCE_RUN, "extracted"), (RUN_1, "synced")]


def test_leads_chartmogul_merged_on_its_own_show_with_the_merge_dags_verdict(warehouse):
    warehouse.insert_rows(
        "mogulflow_reconciliation",
        ("run_id", "dag_id", "data_source_uuid", "entity", "external_id", "kind", "chartmogul_value", "checked_at"),
        [
            ("rec", "chartmogul_reconcile", "ds_1", "lead", "B", "merged", "cus_b (records: ds_1/B, ds_billing/cus_b)", T("2025-03-15 06:00")),
            ("rec", "chartmogul_reconcile", "ds_1", "lead", "C", "merged", "cus_x (records: ds_1/C, ds_billing/cus_x)", T("2025-03-15 06:00")),
        ],
    )  # fmt: skip
    save_state(
        warehouse,
        [
            StateEntry(entity=Entity.CONVERSION, data_source_uuid="ds_1", external_id="B", status=SyncStatus.MERGED,
                       synced_at=T("2025-03-15 07:00"), run_id=MERGE_RUN, chartmogul_uuid="cus_b",
                       payload={"billing_data_source_uuid": "ds_billing", "billing_customer_external_id": "cus_b",
                                "merged_into": "cus_b (records: ds_1/B, ds_billing/cus_b)"}),
            StateEntry(entity=Entity.CONVERSION, data_source_uuid="ds_1", external_id="E", status=SyncStatus.FAILED,
                       synced_at=T("2025-03-15 07:00"), run_id=MERGE_RUN,
                       payload={"billing_data_source_uuid": "ds_billing", "billing_customer_external_id": "cus_e",
                                "merged_into": "cus_y (records: ds_1/E, ds_billing/cus_y)", "error": "merged into cus_y"}),
        ],
    )  # fmt: skip

    found = queries.overview(warehouse, PERIOD, data_source_uuid="ds_1").chartmogul_merges

    assert sorted((m.lead_id, m.merged_into.split()[0], m.verdict, m.detail) for m in found) == [
        ("B", "cus_b", "done", None),  # the merge DAG found it in its paying customer
        ("C", "cus_x", "reported", None),  # only the reconciliation has seen it
        ("E", "cus_y", "failed", "merged into cus_y"),
    ]
