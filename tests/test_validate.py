"""The contract's validation rules, one behaviour per test."""

from __future__ import annotations

import random
import string
from datetime import datetime, timedelta

import email_validator
import pandas as pd
import pytest
from builders import NOW, conversion, frame, lead, plan, trial

from mogulflow.validate.validator import (
    COMMON_EMAIL,
    validate_conversions,
    validate_leads,
    validate_plans,
    validate_trials,
)
from mogulflow.values.entities import Entity
from mogulflow.values.rejected_rows import RejectedRow, RuleFailure

FUTURE = datetime(2099, 1, 1)


def only_reject(result) -> RejectedRow:
    assert len(result.rejected) == 1, [r.reason for r in result.rejected]
    return result.rejected[0]


def trials_result(*rows, leads=("L1",), plans=("P1",)):
    return validate_trials(frame(*rows), now=NOW, known_lead_ids=set(leads), known_plan_ids=set(plans))


# --- general ---------------------------------------------------------------------------------------


def test_valid_leads_pass_untouched_with_utc_timestamps():
    result = validate_leads(frame(lead("L1"), lead("L2")), now=NOW)

    assert result.rejected == ()
    assert result.extracted == 2
    assert list(result.valid["lead_id"]) == ["L1", "L2"]
    assert str(result.valid["updated_at"].dtype) == "datetime64[us, UTC]"
    assert result.valid.at[0, "lead_created_at"] == pd.Timestamp("2025-03-01 09:00", tz="UTC")


def test_tz_aware_timestamps_are_converted_to_utc():
    aware = pd.Timestamp("2025-03-01 11:00", tz="Europe/Berlin")
    result = validate_leads(frame(lead(lead_created_at=aware)), now=NOW)

    assert result.valid.at[0, "lead_created_at"] == pd.Timestamp("2025-03-01 10:00", tz="UTC")


def test_string_dtype_and_nullable_int_columns_are_accepted():
    plans = frame(plan("P1"), plan("P2")).astype(
        {"plan_id": "string", "name": "string", "interval_count": "Int64"}
    )

    result = validate_plans(plans, now=NOW)

    assert result.rejected == ()
    assert list(result.valid["interval_count"]) == [1, 1]


def test_postgres_style_extract_with_object_texts_and_float_ints_is_accepted():
    trials = frame(trial("T1"), trial("T2", subscription_id=None)).astype(
        {"trial_id": object, "subscription_id": object, "quantity": float, "amount_in_cents": float}
    )
    trials["started_at"] = trials["started_at"].dt.tz_localize("UTC")

    result = validate_trials(trials, now=NOW, known_lead_ids={"L1"}, known_plan_ids={"P1"})

    assert result.rejected == ()
    assert str(result.valid["quantity"].dtype) == "Int64"
    assert pd.isna(result.valid.at[1, "subscription_id"])


def test_columns_without_any_value_are_accepted_when_optional():
    leads = frame(lead("L1"), lead("L2"))
    leads[["email", "state", "free_trial_started_at"]] = None

    result = validate_leads(leads, now=NOW)

    assert result.rejected == ()
    assert str(result.valid["free_trial_started_at"].dtype) == "datetime64[us, UTC]"


def test_texts_are_stripped_and_blank_optional_texts_become_missing():
    result = validate_leads(frame(lead(" L1 ", company_name="  Acme  ", state="   ", zip="")), now=NOW)

    row = result.valid.iloc[0]
    assert (row["lead_id"], row["company_name"]) == ("L1", "Acme")
    assert pd.isna(row["state"]) and pd.isna(row["zip"])


def test_every_broken_rule_of_a_row_is_in_its_reason():
    rejected = only_reject(validate_leads(frame(lead(email="bob@", country="XX", company_name=" ")), now=NOW))

    assert rejected.reason == (
        "company_name: must be present (found missing); "
        "email: must be a valid email address (found 'bob@'); "
        "country: must be an ISO 3166-1 alpha-2 country code (found 'XX')"
    )
    assert rejected.failures[1] == RuleFailure("email", "must be a valid email address", "bob@")


def test_valid_and_rejected_rows_add_up_to_extracted():
    rows = [
        lead("L1"),
        lead("L1", updated_at=datetime(2025, 1, 1)),
        lead(None),
        lead("L2", email="x"),
        lead("L3"),
    ]

    result = validate_leads(frame(*rows), now=NOW)

    assert len(result.valid) + len(result.rejected) == result.extracted == 5
    assert result.reject_ratio == pytest.approx(3 / 5)
    assert list(result.valid.index) == [0, 1]


def test_rejected_rows_come_in_extract_order():
    rows = [lead("L1", email="x"), lead("L2"), lead("L3", country="ZZ"), lead(None)]

    result = validate_leads(frame(*rows), now=NOW)

    assert [r.source_id for r in result.rejected] == ["L1", "L3", None]
    assert {r.entity for r in result.rejected} == {Entity.LEAD}


def test_empty_extract_gives_empty_result():
    result = validate_leads(frame(lead()).iloc[:0], now=NOW)

    assert (len(result.valid), result.rejected, result.extracted) == (0, (), 0)


def test_extract_without_a_contract_column_is_refused_with_the_column_named():
    with pytest.raises(ValueError, match=r"lacks column.*email"):
        validate_leads(frame(lead()).drop(columns=["email"]), now=NOW)


def test_an_extract_validated_in_chunks_gives_what_the_whole_frame_gives():
    rows = [
        lead("L1", updated_at=datetime(2025, 3, 1)),
        lead("L2", country=" de ", email="bad@"),
        lead("L1", company_name="Acme (new)", updated_at=datetime(2025, 3, 3)),  # wins over the first
        lead(None),
        lead("L3", company_name="   ", state=" "),
        lead("L2", updated_at=datetime(2025, 2, 1)),
    ]
    whole = validate_leads(frame(*rows), now=NOW)
    chunked = validate_leads(iter([frame(*rows[:2]), frame(*rows[2:5]), frame(*rows[5:])]), now=NOW)

    pd.testing.assert_frame_equal(chunked.valid, whole.valid)
    assert chunked.rejected == whole.rejected
    assert chunked.extracted == whole.extracted == 6


def test_texts_of_a_many_rowed_column_are_normalised_like_those_of_a_short_one():
    countries = [" us", "De ", "", None, "fr"] * 5000  # few distinct values: normalised once each
    result = validate_leads(frame(*(lead(f"L{i}", country=c) for i, c in enumerate(countries))), now=NOW)

    country = result.valid["country"]
    assert country.iloc[:5].isna().tolist() == [False, False, True, True, False]
    assert country.dropna().iloc[:3].tolist() == ["US", "DE", "FR"]
    assert country.value_counts().to_dict() == {"US": 5000, "DE": 5000, "FR": 5000}


# --- leads -----------------------------------------------------------------------------------------


def test_lead_without_id_is_rejected_with_null_source_id():
    rejected = only_reject(validate_leads(frame(lead(None), lead("L2")), now=NOW))

    assert rejected.source_id is None
    assert rejected.reason == "lead_id: must be present (found missing)"


def test_lead_with_blank_id_is_rejected_with_null_source_id():
    rejected = only_reject(validate_leads(frame(lead("   ")), now=NOW))

    assert rejected.source_id is None


def test_rows_without_id_are_not_duplicates_of_each_other():
    result = validate_leads(frame(lead(None), lead(None)), now=NOW)

    assert [r.reason for r in result.rejected] == ["lead_id: must be present (found missing)"] * 2


def test_duplicate_lead_ids_keep_latest_updated_at():
    older = lead("L1", company_name="Old name", updated_at=datetime(2025, 3, 1))
    newer = lead("L1", company_name="New name", updated_at=datetime(2025, 3, 5))

    result = validate_leads(frame(newer, older), now=NOW)

    assert list(result.valid["company_name"]) == ["New name"]
    rejected = only_reject(result)
    assert rejected.source_id == "L1"
    assert (
        rejected.reason
        == "duplicate lead_id: a row with a later updated_at wins (found '2025-03-01T00:00:00Z')"
    )


def test_duplicate_lead_ids_with_equal_updated_at_keep_the_later_row():
    first = lead("L1", company_name="First")
    second = lead("L1", company_name="Second")

    result = validate_leads(frame(first, second), now=NOW)

    assert list(result.valid["company_name"]) == ["Second"]
    assert "a later row with the same updated_at wins" in only_reject(result).reason


def test_latest_duplicate_is_validated_and_rejected_when_invalid():
    older = lead("L1", updated_at=datetime(2025, 3, 1))
    newer = lead("L1", email="broken", updated_at=datetime(2025, 3, 5))

    result = validate_leads(frame(older, newer), now=NOW)

    assert len(result.valid) == 0
    assert [r.reason.split(":")[0] for r in result.rejected] == ["duplicate lead_id", "email"]


def test_lead_without_company_name_is_rejected():
    rejected = only_reject(validate_leads(frame(lead(company_name=None)), now=NOW))

    assert rejected.reason == "company_name: must be present (found missing)"


def test_lead_with_invalid_email_is_rejected():
    rejected = only_reject(validate_leads(frame(lead(email="jane@@acme.com")), now=NOW))

    assert rejected.failures == (RuleFailure("email", "must be a valid email address", "jane@@acme.com"),)


@pytest.mark.parametrize(
    "email", ["jane@localhost", "jane@acme", "jane..doe@acme.com", "jane@-acme.com", "a b@c.io"]
)
def test_lead_with_malformed_email_is_rejected(email):
    assert only_reject(validate_leads(frame(lead(email=email)), now=NOW)).failures[0].field == "email"


@pytest.mark.parametrize("email", ["o'brien+trial@sub.acme.co.uk", "jürgen@müller.de", "JANE@ACME.COM"])
def test_lead_with_unusual_but_valid_email_is_accepted(email):
    assert validate_leads(frame(lead(email=email)), now=NOW).rejected == ()


def test_lead_without_email_is_accepted():
    assert validate_leads(frame(lead(email=None), lead("L2", email=" ")), now=NOW).rejected == ()


def test_fast_email_pattern_only_accepts_what_email_validator_accepts():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + ".-_+'@"
    candidates = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 20))) for _ in range(20000)]
    candidates += [f"{c}@{c}.com" for c in candidates[:2000]] + [
        "a@b.test",
        "a@b.local",
        "x@" + "a" * 64 + ".com",
    ]
    for candidate in candidates:
        if COMMON_EMAIL.fullmatch(candidate):
            email_validator.validate_email(candidate, check_deliverability=False)  # must not raise


def test_lead_with_lowercase_country_is_accepted_and_upper_cased():
    result = validate_leads(frame(lead(country="de")), now=NOW)

    assert result.rejected == ()
    assert result.valid.at[0, "country"] == "DE"


@pytest.mark.parametrize("country", ["XX", "USA", "U", "Germany"])
def test_lead_with_unknown_country_code_is_rejected(country):
    rejected = only_reject(validate_leads(frame(lead(country=country)), now=NOW))

    assert rejected.failures[0].rule == "must be an ISO 3166-1 alpha-2 country code"


def test_lead_without_country_is_accepted():
    assert validate_leads(frame(lead(country=None)), now=NOW).rejected == ()


def test_lead_created_after_its_free_trial_started_is_rejected():
    row = lead(lead_created_at=datetime(2025, 3, 5), free_trial_started_at=datetime(2025, 3, 1))

    rejected = only_reject(validate_leads(frame(row), now=NOW))

    assert rejected.reason == (
        "lead_created_at: must not be after free_trial_started_at (found '2025-03-05T00:00:00Z')"
    )


def test_lead_created_when_its_free_trial_started_is_accepted():
    row = lead(lead_created_at=datetime(2025, 3, 1), free_trial_started_at=datetime(2025, 3, 1))

    assert validate_leads(frame(row), now=NOW).rejected == ()


def test_lead_with_only_one_of_its_dates_is_accepted():
    rows = [lead("L1", lead_created_at=None), lead("L2", free_trial_started_at=None)]
    rows.append(lead("L3", lead_created_at=None, free_trial_started_at=None))

    assert validate_leads(frame(*rows), now=NOW).rejected == ()


@pytest.mark.parametrize("column", ["lead_created_at", "free_trial_started_at", "updated_at"])
def test_lead_with_a_future_timestamp_is_rejected(column):
    row = lead(**{column: FUTURE})
    if column == "lead_created_at":
        row["free_trial_started_at"] = None

    rejected = only_reject(validate_leads(frame(row), now=NOW))

    assert RuleFailure(column, "must not be in the future", "2099-01-01T00:00:00Z") in rejected.failures


def test_lead_timestamp_within_five_minutes_of_clock_skew_is_accepted():
    skewed = (NOW + timedelta(minutes=4)).replace(tzinfo=None)
    too_far = (NOW + timedelta(minutes=6)).replace(tzinfo=None)

    result = validate_leads(frame(lead("L1", updated_at=skewed), lead("L2", updated_at=too_far)), now=NOW)

    assert [r.source_id for r in result.rejected] == ["L2"]


def test_lead_without_updated_at_is_rejected():
    rejected = only_reject(validate_leads(frame(lead(updated_at=None)), now=NOW))

    assert rejected.reason == "updated_at: must be present (found missing)"


# --- plans -----------------------------------------------------------------------------------------


def test_valid_plans_pass():
    rows = [plan("P1"), plan("P2", interval_unit="year"), plan("P3", interval_unit="day", interval_count=7)]

    assert validate_plans(frame(*rows), now=NOW).rejected == ()


def test_plan_without_id_is_rejected_with_null_source_id():
    assert only_reject(validate_plans(frame(plan(None)), now=NOW)).source_id is None


def test_duplicate_plan_ids_keep_latest_updated_at():
    rows = [
        plan("P1", name="Old", updated_at=datetime(2025, 1, 1)),
        plan("P1", name="New", updated_at=datetime(2025, 2, 1)),
    ]

    result = validate_plans(frame(*rows), now=NOW)

    assert list(result.valid["name"]) == ["New"]
    assert only_reject(result).reason.startswith("duplicate plan_id")


def test_plan_without_name_is_rejected():
    assert (
        only_reject(validate_plans(frame(plan(name="")), now=NOW)).reason
        == "name: must be present (found missing)"
    )


@pytest.mark.parametrize("unit", ["week", "Month", "months"])
def test_plan_with_unknown_interval_unit_is_rejected(unit):
    rejected = only_reject(validate_plans(frame(plan(interval_unit=unit)), now=NOW))

    assert rejected.failures == (RuleFailure("interval_unit", "must be one of day, month, year", unit),)


@pytest.mark.parametrize("count", [0, -1])
def test_plan_with_interval_count_below_one_is_rejected(count):
    rejected = only_reject(validate_plans(frame(plan(interval_count=count)), now=NOW))

    assert rejected.failures == (RuleFailure("interval_count", "must be at least 1", str(count)),)


def test_plan_without_interval_count_is_rejected():
    rejected = only_reject(validate_plans(frame(plan(interval_count=None)), now=NOW))

    assert rejected.reason == "interval_count: must be present (found missing)"


def test_plan_with_future_updated_at_is_rejected():
    rejected = only_reject(validate_plans(frame(plan(updated_at=FUTURE)), now=NOW))

    assert rejected.failures[0].rule == "must not be in the future"


# --- trials ----------------------------------------------------------------------------------------


def test_valid_trial_passes_with_currency_upper_cased():
    result = trials_result(trial(currency="eur"))

    assert result.rejected == ()
    assert result.valid.at[0, "currency"] == "EUR"


def test_trial_without_id_is_rejected_with_null_source_id():
    assert only_reject(trials_result(trial(None))).source_id is None


def test_duplicate_trial_ids_keep_latest_updated_at():
    rows = [
        trial("T1", amount_in_cents=100, updated_at=datetime(2025, 3, 3)),
        trial("T1", amount_in_cents=50),
    ]

    result = trials_result(*rows)

    assert list(result.valid["amount_in_cents"]) == [100]
    assert only_reject(result).reason.startswith("duplicate trial_id")


def test_trial_of_unknown_lead_is_rejected():
    rejected = only_reject(trials_result(trial(lead_id="L404")))

    assert rejected.failures == (
        RuleFailure("lead_id", "must name a lead that is valid or was synced before", "L404"),
    )


def test_trial_of_unknown_plan_is_rejected():
    rejected = only_reject(trials_result(trial(plan_id="P404")))

    assert rejected.failures[0].field == "plan_id"


def test_trial_without_lead_or_plan_is_rejected_as_missing():
    rejected = only_reject(trials_result(trial(lead_id=None, plan_id=" ")))

    assert (
        rejected.reason
        == "lead_id: must be present (found missing); plan_id: must be present (found missing)"
    )


def test_trial_ending_before_it_starts_is_rejected():
    rejected = only_reject(trials_result(trial(ends_at=datetime(2025, 3, 1))))

    assert rejected.failures == (RuleFailure("ends_at", "must be after started_at", "2025-03-01T00:00:00Z"),)


def test_trial_ending_when_it_starts_is_rejected():
    row = trial(started_at=datetime(2025, 3, 1), ends_at=datetime(2025, 3, 1))

    assert only_reject(trials_result(row)).failures[0].rule == "must be after started_at"


def test_trial_with_negative_amount_is_rejected():
    rejected = only_reject(trials_result(trial(amount_in_cents=-100)))

    assert rejected.failures == (RuleFailure("amount_in_cents", "must not be negative", "-100"),)


def test_paid_trial_is_accepted():
    assert trials_result(trial(amount_in_cents=4900)).rejected == ()


@pytest.mark.parametrize("currency", ["EURO", "XYZ", "$"])
def test_trial_with_unknown_currency_is_rejected(currency):
    rejected = only_reject(trials_result(trial(currency=currency)))

    assert rejected.failures[0].rule == "must be an ISO 4217 currency code"


@pytest.mark.parametrize("quantity", [0, -2])
def test_trial_with_quantity_below_one_is_rejected(quantity):
    rejected = only_reject(trials_result(trial(quantity=quantity)))

    assert rejected.failures == (RuleFailure("quantity", "must be at least 1", str(quantity)),)


@pytest.mark.parametrize("column", ["started_at", "amount_in_cents", "currency", "quantity", "ends_at"])
def test_trial_missing_a_required_value_is_rejected(column):
    rejected = only_reject(trials_result(trial(**{column: None})))

    assert rejected.failures == (RuleFailure(column, "must be present", None),)


def test_trial_without_subscription_id_is_accepted():
    assert trials_result(trial(subscription_id=None)).rejected == ()


@pytest.mark.parametrize("column", ["started_at", "ends_at", "updated_at"])
def test_trial_with_a_future_timestamp_is_rejected(column):
    row = trial(**{column: FUTURE})
    if column == "started_at":
        row["ends_at"] = datetime(2099, 2, 1)

    rejected = only_reject(trials_result(row))

    assert RuleFailure(column, "must not be in the future", "2099-01-01T00:00:00Z") in rejected.failures


# --- conversions -----------------------------------------------------------------------------------


def conversions_result(*rows, leads=("L1", "L2")):
    return validate_conversions(frame(*rows), now=NOW, known_lead_ids=set(leads))


def test_valid_conversion_passes():
    result = conversions_result(conversion("L1"), conversion("L2", billing_customer_external_id="cus_2"))

    assert result.rejected == ()
    assert len(result.valid) == 2


@pytest.mark.parametrize(
    "column", ["billing_data_source_uuid", "billing_customer_external_id", "converted_at"]
)
def test_conversion_missing_a_required_value_is_rejected(column):
    rejected = only_reject(conversions_result(conversion(**{column: None})))

    assert rejected.failures == (RuleFailure(column, "must be present", None),)


def test_conversion_without_lead_id_is_rejected_with_null_source_id():
    assert only_reject(conversions_result(conversion(None))).source_id is None


def test_conversion_of_a_lead_never_synced_is_rejected():
    rejected = only_reject(conversions_result(conversion("L404")))

    assert rejected.failures == (RuleFailure("lead_id", "must name a lead mogulflow has synced", "L404"),)


def test_conversion_in_the_future_is_rejected():
    rejected = only_reject(conversions_result(conversion(converted_at=FUTURE)))

    assert rejected.failures[0] == RuleFailure(
        "converted_at", "must not be in the future", "2099-01-01T00:00:00Z"
    )


def test_duplicate_conversions_keep_latest_converted_at():
    rows = [
        conversion("L1", billing_customer_external_id="cus_new", converted_at=datetime(2025, 5, 1)),
        conversion("L1"),
    ]

    result = conversions_result(*rows)

    assert list(result.valid["billing_customer_external_id"]) == ["cus_new"]
    assert only_reject(result).reason.startswith("duplicate lead_id: a row with a later converted_at wins")
