"""Validated rows → ChartMogul payloads (contract: "Mapping to ChartMogul")."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
from builders import NOW, frame, lead, plan, trial

from mogulflow.transform.customers import build_customer_payloads, resolve_lead_created_at
from mogulflow.transform.payloads import (
    CustomerPayload,
    PlanPayload,
    TrialInvoice,
    build_plan_payloads,
    build_trial_invoices,
)
from mogulflow.validate.validator import validate_leads, validate_plans, validate_trials
from mogulflow.values.payload_hash import content_hash, format_api_time

DS = "ds_leads"


def valid_leads(*rows):
    return validate_leads(frame(*rows), now=NOW).valid


def valid_trials(*rows):
    result = validate_trials(frame(*rows), now=NOW, known_lead_ids={"L1", "L2", "L3"}, known_plan_ids={"P1"})
    return result.valid


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- the lead-date default rule --------------------------------------------------------------------


def test_lead_created_at_is_kept_when_present():
    leads = valid_leads(lead("L1", lead_created_at=datetime(2025, 2, 1)))

    assert resolve_lead_created_at(leads, valid_trials(trial(lead_id="L1")))[0] == pd.Timestamp(
        utc(2025, 2, 1)
    )


def test_lead_without_created_date_takes_its_free_trial_start():
    leads = valid_leads(lead("L1", lead_created_at=None, free_trial_started_at=datetime(2025, 3, 2)))

    assert resolve_lead_created_at(leads, valid_trials(trial(lead_id="L1")))[0] == pd.Timestamp(
        utc(2025, 3, 2)
    )


def test_trial_without_lead_date_sets_lead_created_at_to_earliest_trial_start():
    leads = valid_leads(lead("L1", lead_created_at=None, free_trial_started_at=None))
    trials = valid_trials(
        trial("T1", started_at=datetime(2025, 5, 1), ends_at=datetime(2025, 5, 15)),
        trial("T2", started_at=datetime(2025, 4, 1), ends_at=datetime(2025, 4, 15)),
    )

    (payload,) = build_customer_payloads(leads, trials)

    assert payload.lead_created_at == utc(2025, 4, 1)
    assert payload.free_trial_started_at is None


def test_lead_without_any_date_or_trial_has_no_lead_created_at():
    leads = valid_leads(lead("L1", lead_created_at=None, free_trial_started_at=None))

    (payload,) = build_customer_payloads(leads, valid_trials(trial(lead_id="L2")))

    assert payload.lead_created_at is None
    assert "lead_created_at" not in payload.to_api(DS)


def test_leads_resolve_without_any_valid_trial():
    leads = valid_leads(lead("L1"), lead("L2", lead_created_at=None, free_trial_started_at=None))
    no_trials = valid_trials(trial()).iloc[:0]

    payloads = build_customer_payloads(leads, no_trials)

    assert [p.lead_created_at for p in payloads] == [utc(2025, 3, 1, 9), None]


def test_empty_frames_build_no_payloads():
    leads, trials = valid_leads(lead()).iloc[:0], valid_trials(trial()).iloc[:0]
    plans = validate_plans(frame(plan()), now=NOW).valid.iloc[:0]

    assert (
        build_customer_payloads(leads, trials)
        == build_trial_invoices(trials)
        == build_plan_payloads(plans)
        == []
    )


def test_resolved_dates_align_with_the_leads_index():
    leads = valid_leads(lead("L1"), lead("L2", lead_created_at=None, free_trial_started_at=None)).iloc[::-1]
    trials = valid_trials(trial(lead_id="L2", started_at=datetime(2025, 6, 1), ends_at=datetime(2025, 6, 9)))

    resolved = resolve_lead_created_at(leads, trials)

    assert list(resolved.index) == list(leads.index)
    assert resolved[1] == pd.Timestamp(utc(2025, 6, 1))


# --- customers -------------------------------------------------------------------------------------


def test_customer_payload_maps_every_lead_field():
    leads = valid_leads(lead("L1", country="de", company_name=" Acme GmbH "))

    (payload,) = build_customer_payloads(leads, valid_trials(trial()))

    assert payload == CustomerPayload(
        external_id="L1",
        name="Acme GmbH",
        email="jane@acme.example.com",
        country="DE",
        state="CA",
        city="San Francisco",
        zip="94107",
        lead_created_at=utc(2025, 3, 1, 9),
        free_trial_started_at=utc(2025, 3, 2, 10),
    )
    assert payload.to_api(DS) == {
        "data_source_uuid": DS,
        "external_id": "L1",
        "name": "Acme GmbH",
        "email": "jane@acme.example.com",
        "country": "DE",
        "state": "CA",
        "city": "San Francisco",
        "zip": "94107",
        "lead_created_at": "2025-03-01T09:00:00Z",
        "free_trial_started_at": "2025-03-02T10:00:00Z",
    }


def test_customer_without_optional_fields_leaves_them_out_of_create_but_keeps_them_as_null():
    leads = valid_leads(lead("L1", email=None, country=None, state=" ", city=None, zip=None))

    (payload,) = build_customer_payloads(leads, valid_trials(trial()))

    assert set(payload.to_api(DS)) == {
        "data_source_uuid",
        "external_id",
        "name",
        "lead_created_at",
        "free_trial_started_at",
    }
    assert payload.fields()["email"] is None
    assert set(payload.fields()) == {
        "name",
        "email",
        "country",
        "state",
        "city",
        "zip",
        "lead_created_at",
        "free_trial_started_at",
    }


def test_customer_payloads_come_in_row_order():
    leads = valid_leads(lead("L2"), lead("L1"), lead("L3"))

    assert [p.external_id for p in build_customer_payloads(leads, valid_trials(trial()))] == [
        "L2",
        "L1",
        "L3",
    ]


# --- plans -----------------------------------------------------------------------------------------


def test_plan_payload_maps_every_plan_field():
    plans = validate_plans(
        frame(plan("P1", name="Pro yearly", interval_count=1, interval_unit="year")), now=NOW
    )

    (payload,) = build_plan_payloads(plans.valid)

    assert payload == PlanPayload(external_id="P1", name="Pro yearly", interval_count=1, interval_unit="year")
    assert payload.to_api(DS) == {
        "data_source_uuid": DS,
        "external_id": "P1",
        "name": "Pro yearly",
        "interval_count": 1,
        "interval_unit": "year",
    }
    assert type(payload.interval_count) is int


# --- trial invoices --------------------------------------------------------------------------------


def test_trial_invoice_maps_the_trial_to_one_trial_line_item():
    trials = valid_trials(trial("T1", amount_in_cents=4900, currency="eur", quantity=3))

    (invoice,) = build_trial_invoices(trials)

    assert invoice.to_api(plan_uuid="pl_123", data_source_uuid=DS) == {
        "external_id": "T1",
        "date": "2025-03-02T10:00:00Z",
        "currency": "EUR",
        "customer_external_id": "L1",
        "data_source_uuid": DS,
        "line_items": [
            {
                "type": "trial",
                "external_id": "T1",
                "subscription_external_id": "S1",
                "plan_uuid": "pl_123",
                "service_period_start": "2025-03-02T10:00:00Z",
                "service_period_end": "2025-03-16T10:00:00Z",
                "amount_in_cents": 4900,
                "quantity": 3,
            }
        ],
    }
    assert type(invoice.amount_in_cents) is int and type(invoice.quantity) is int


def test_trial_without_subscription_id_uses_trial_id_as_subscription():
    (invoice,) = build_trial_invoices(valid_trials(trial("T9", subscription_id=None)))

    assert invoice.subscription_external_id == "T9"


def test_free_trial_invoice_has_zero_amount():
    (invoice,) = build_trial_invoices(valid_trials(trial(amount_in_cents=0)))

    line = invoice.to_api(plan_uuid="pl_1", data_source_uuid=DS)["line_items"][0]
    assert line["amount_in_cents"] == 0


def test_trial_invoice_fields_name_the_plan_by_external_id():
    (invoice,) = build_trial_invoices(valid_trials(trial(plan_id="P1")))

    assert invoice.fields()["plan_external_id"] == "P1"
    assert "plan_uuid" not in invoice.fields()


# --- content hash ----------------------------------------------------------------------------------


def test_content_hash_ignores_key_order():
    assert content_hash({"a": 1, "b": "x"}) == content_hash({"b": "x", "a": 1})


def test_content_hash_is_a_stable_sha256_hex():
    # sha256 of the canonical JSON '{"email":null,"name":"Acme"}': pinned, since stored hashes rely on it
    digest = content_hash({"name": "Acme", "email": None})

    assert digest == "7e2cccd21f1791b745f2c5944fa54d243af5205b2254c30f10ace90a6db0fbc5"
    assert digest == hashlib.sha256(b'{"email":null,"name":"Acme"}').hexdigest()


def test_content_hash_changes_when_a_field_changes():
    before = TrialInvoice("T1", "L1", "P1", "S1", utc(2025, 3, 1), utc(2025, 3, 15), 0, "USD", 1)
    after = TrialInvoice("T1", "L1", "P1", "S1", utc(2025, 3, 1), utc(2025, 3, 15), 100, "USD", 1)

    assert content_hash(before.fields()) != content_hash(after.fields())


def test_content_hash_of_rebuilt_payloads_is_unchanged():
    leads = valid_leads(lead("L1"), lead("L2", email=None))
    first = [content_hash(p.fields()) for p in build_customer_payloads(leads, valid_trials(trial()))]
    again = [content_hash(p.fields()) for p in build_customer_payloads(leads.copy(), valid_trials(trial()))]

    assert first == again


def test_content_hash_is_the_sha256_of_sorted_compact_json_for_every_value_kind():
    # The fast path for flat fields must give exactly what json.dumps gives, escapes included.
    texts = ["", "Acme", 'say "hi"', "back\\slash", "line\nbreak\t\x00\x1f\x7f", "Müller €", "𝄞", "\u2028"]
    values = [*texts, None, True, False, 0, -7, 2**70, 1.5, [1, "a"], {"nested": None}]
    for number, value in enumerate(values):
        fields = {"z": value, "a": texts[number % len(texts)], texts[-number % len(texts)]: None}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

        assert content_hash(fields) == hashlib.sha256(canonical.encode("utf-8")).hexdigest(), fields


def test_api_time_reads_like_strftime_in_utc():
    moments = [
        utc(2025, 3, 4, 5, 6, 7),
        datetime(2025, 3, 4, 5, 6, 7, 999_999, tzinfo=UTC),
        datetime(2025, 3, 4, 1, 0, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2025, 12, 31, 23, 59, 59),
        pd.Timestamp("2025-03-04 05:06:07.5", tz="UTC").to_pydatetime(),
        utc(999, 1, 2, 3, 4, 5),
    ]
    for moment in moments:
        in_utc = moment.astimezone(UTC) if moment.tzinfo else moment
        assert format_api_time(moment) == in_utc.strftime("%Y-%m-%dT%H:%M:%SZ"), moment
    assert format_api_time(None) is None
