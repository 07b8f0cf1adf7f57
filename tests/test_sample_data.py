"""The sample warehouse: deterministic, realistic enough, every validation rule represented."""

from __future__ import annotations

from collections import Counter

import duckdb
import pandas as pd
import pytest
from builders import NOW

from mogulflow.transform.customers import build_customer_payloads
from mogulflow.validate.validator import (
    validate_attributes,
    validate_conversions,
    validate_leads,
    validate_plans,
    validate_tags,
    validate_trials,
)
from mogulflow.values.entities import Entity
from mogulflow.values.rejected_rows import RuleFailure, ValidationResult
from mogulflow_demo.sample_warehouse import MIN_LEADS, SAMPLE_END, SAMPLE_START, build_sample_warehouse, main

SAMPLE_LEADS = 2000


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "warehouse.duckdb"
    stats = build_sample_warehouse(path, seed=7, leads=SAMPLE_LEADS, attributes=True)
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = {t: connection.execute(f"SELECT * FROM {t}").df() for t in stats.rows}
    return path, stats, tables


@pytest.fixture(scope="module")
def validated(sample):
    _, _, tables = sample
    leads = validate_leads(tables["leads"], now=NOW)
    plans = validate_plans(tables["plans"], now=NOW)
    lead_ids, plan_ids = set(leads.valid["lead_id"]), set(plans.valid["plan_id"])
    trials = validate_trials(tables["trials"], now=NOW, known_lead_ids=lead_ids, known_plan_ids=plan_ids)
    conversions = validate_conversions(tables["conversions"], now=NOW, known_lead_ids=lead_ids)
    attributes = validate_attributes(tables["lead_attributes"], now=NOW, known_lead_ids=lead_ids)
    tags = validate_tags(tables["lead_tags"], now=NOW, known_lead_ids=lead_ids)
    return {r.entity: r for r in (leads, plans, trials, conversions, attributes, tags)}


def rule_label(failure: RuleFailure) -> str:
    """'field: rule', or 'duplicate <id column>' for a duplicate."""
    return f"{failure.field}: {failure.rule}" if failure.field else failure.rule.split(":")[0]


def test_same_seed_gives_the_same_rows(sample, tmp_path):
    _, _, tables = sample
    again = tmp_path / "again.duckdb"

    build_sample_warehouse(again, seed=7, leads=SAMPLE_LEADS, attributes=True)

    with duckdb.connect(str(again), read_only=True) as connection:
        for table, expected in tables.items():
            pd.testing.assert_frame_equal(connection.execute(f"SELECT * FROM {table}").df(), expected)


def test_another_seed_gives_other_rows(sample, tmp_path):
    _, _, tables = sample
    other = tmp_path / "other.duckdb"

    build_sample_warehouse(other, seed=8, leads=SAMPLE_LEADS)

    with duckdb.connect(str(other), read_only=True) as connection:
        leads = connection.execute("SELECT * FROM leads").df()
    assert not leads["company_name"].equals(tables["leads"]["company_name"])


def test_rebuilding_replaces_the_tables(tmp_path):
    path = tmp_path / "twice.duckdb"
    build_sample_warehouse(path, seed=7, leads=MIN_LEADS + 500)

    stats = build_sample_warehouse(path, seed=7, leads=MIN_LEADS)

    with duckdb.connect(str(path), read_only=True) as connection:
        assert (
            connection.execute("SELECT count(*) FROM leads").fetchone()[0] == stats.rows["leads"] == MIN_LEADS
        )


def test_stats_count_the_rows_of_every_table(sample):
    _, stats, tables = sample

    assert stats.rows == {table: len(frame) for table, frame in tables.items()}
    assert stats.rows["leads"] == SAMPLE_LEADS
    assert 25 <= stats.rows["plans"] <= 35


@pytest.mark.parametrize("entity", list(Entity))
def test_validators_reject_exactly_the_rows_the_stats_announce(validated, sample, entity):
    _, stats, _ = sample
    result: ValidationResult = validated[entity]

    found = Counter(rule_label(f) for rejected in result.rejected for f in rejected.failures)

    assert len(result.rejected) == stats.rejected[entity]
    assert found == Counter(stats.rule_failures[entity])


@pytest.mark.parametrize("entity", list(Entity))
def test_reject_ratio_stays_under_the_default_limit(validated, entity):
    assert validated[entity].reject_ratio < 0.05


def test_plans_hold_exactly_one_bad_plan(validated):
    (bad,) = validated[Entity.PLAN].rejected

    assert bad.source_id == "plan_legacy_fortnightly"
    assert len(bad.failures) == 4


def test_every_validation_rule_is_broken_somewhere(sample):
    _, stats, _ = sample
    expected = {
        Entity.LEAD: {
            "lead_id",
            "duplicate",
            "company_name",
            "email",
            "country",
            "lead_created_at",
            "updated_at",
        },
        Entity.PLAN: {"name", "interval_count", "interval_unit", "updated_at"},
        Entity.TRIAL: {
            "trial_id",
            "duplicate",
            "lead_id",
            "plan_id",
            "ends_at",
            "amount_in_cents",
            "currency",
            "quantity",
            "updated_at",
        },
        Entity.CONVERSION: {
            "lead_id",
            "duplicate",
            "billing_data_source_uuid",
            "billing_customer_external_id",
            "converted_at",
        },
    }
    for entity, fields in expected.items():
        broken = {label.split(":")[0].split(" ")[0] for label in stats.rule_failures[entity]}
        assert broken == fields, entity
        assert all(count >= 1 for count in stats.rule_failures[entity].values())


def test_valid_timestamps_lie_in_the_sample_period(validated):
    columns = {
        Entity.LEAD: ["lead_created_at", "free_trial_started_at", "updated_at"],
        Entity.TRIAL: ["started_at", "ends_at", "updated_at"],
        Entity.CONVERSION: ["converted_at"],
    }
    for entity, names in columns.items():
        for name in names:
            values = validated[entity].valid[name].dropna()
            assert values.min() >= SAMPLE_START.tz_localize("UTC"), name
            assert values.max() <= SAMPLE_END.tz_localize("UTC"), name


def test_sample_has_mixed_case_countries_and_currencies(sample):
    _, _, tables = sample

    assert tables["leads"]["country"].str.islower().any()
    assert tables["trials"]["currency"].str.islower().any()


def test_emails_live_on_the_company_domain(validated):
    leads = validated[Entity.LEAD].valid.dropna(subset=["email"])
    domains = leads["email"].str.split("@").str[1]

    assert (domains.str.count(r"\.") >= 1).all()
    assert domains.nunique() > len(leads) / 10


def test_some_leads_are_dated_only_by_their_trials(validated, sample):
    _, stats, _ = sample
    leads, trials = validated[Entity.LEAD].valid, validated[Entity.TRIAL].valid
    undated = leads["lead_created_at"].isna() & leads["free_trial_started_at"].isna()

    payloads = build_customer_payloads(leads, trials)

    assert stats.leads_dated_by_trial == undated.sum() > 0
    assert all(p.lead_created_at is not None for p, u in zip(payloads, undated, strict=True) if u)


def test_most_trials_are_free_and_some_are_paid(validated):
    amounts = validated[Entity.TRIAL].valid["amount_in_cents"]

    assert 0.5 < (amounts == 0).mean() < 1
    assert (amounts > 0).any()


def test_conversions_point_at_billing_customers(validated):
    conversions = validated[Entity.CONVERSION].valid

    assert set(conversions["billing_data_source_uuid"]) <= {"ds_billing_stripe", "ds_billing_chargebee"}
    assert conversions["billing_customer_external_id"].str.startswith("cus_").all()
    assert "ds_billing_stripe" in set(conversions["billing_data_source_uuid"])


def test_too_few_leads_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        build_sample_warehouse(tmp_path / "tiny.duckdb", leads=MIN_LEADS - 1)


def test_cli_builds_the_warehouse_and_prints_a_summary(tmp_path, capsys):
    path = tmp_path / "cli.duckdb"

    assert main([str(path), "--seed", "3", "--leads", str(MIN_LEADS)]) == 0

    out = capsys.readouterr().out
    assert "leads" in out and "to be rejected" in out
    with duckdb.connect(str(path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM plans").fetchone()[0] > 0


def test_the_demo_gives_each_valid_lead_five_attributes_and_two_tags(sample, validated):
    _, _, tables = sample
    attributes, tags = validated[Entity.ATTRIBUTE].valid, validated[Entity.TAG].valid

    assert attributes.groupby("lead_id").size().eq(5).all()
    assert tags.groupby("lead_id").size().eq(2).all()
    assert set(attributes["key"]) == {
        "lead_source",
        "utm_campaign",
        "plan_tier",
        "company_size",
        "sales_owner",
    }
    assert len(tables["lead_attributes"]) == len(attributes) and len(tables["lead_tags"]) == len(tags)
