"""Client behaviour under scripted faults: no duplicates, no lost writes, no false failures."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from api_test_support import FAST_RETRY
from fake_api import (
    AFTER_500,
    AFTER_DROP,
    AFTER_TIMEOUT,
    BEFORE_429,
    BEFORE_503,
    BEFORE_CONNECT_ERROR,
    FakeChartMogul,
)

from mogulflow.chartmogul import (
    AsyncChartMogulClient,
    AuthenticationError,
    BulkImportUnsupportedError,
    ChartMogulClient,
    CircuitOpenError,
    ClientSettings,
    RateLimitedError,
    RetryPolicy,
    TransientError,
    ValidationError,
)
from mogulflow.values.field_equality import changed_fields

DS = "ds_00000001"


def customer(external_id: str = "lead-1", **fields: object) -> dict[str, object]:
    return {
        "data_source_uuid": DS,
        "external_id": external_id,
        "name": "Acme",
        "email": "a@acme.test",
        **fields,
    }


def invoice(external_id: str, currency: str = "EUR") -> dict[str, object]:
    return {
        "external_id": external_id,
        "data_source_uuid": DS,
        "date": "2025-01-01T00:00:00Z",
        "currency": currency,
        "line_items": [{"type": "trial", "amount_in_cents": 0}],
    }


# ---- creates that may have landed


@pytest.mark.parametrize("fault", [AFTER_500, AFTER_DROP, AFTER_TIMEOUT])
def test_create_whose_answer_was_lost_is_found_not_duplicated(client, fake, fault):
    fake.faults.add("POST", "/v1/customers", fault)
    outcome = client.upsert_customer(customer())
    assert outcome.created and not outcome.updated
    assert len(fake.customers) == 1
    assert outcome.uuid == fake.customers[(DS, "lead-1")]["uuid"]
    assert fake.count("POST", "/v1/customers") == 1  # looked up, never re-posted


@pytest.mark.parametrize("fault", [BEFORE_503, BEFORE_429, BEFORE_CONNECT_ERROR])
def test_create_refused_before_it_landed_is_sent_again(client, fake, fault):
    fake.faults.add("POST", "/v1/customers", fault, fault)
    outcome = client.upsert_customer(customer())
    assert outcome.created
    assert len(fake.customers) == 1
    assert fake.count("POST", "/v1/customers") == 3


def test_existing_customer_is_adopted_and_only_differences_are_patched(client, fake):
    client.upsert_customer(customer(city="Berlin", lead_created_at="2025-01-01 10:00:00 UTC"))
    fake.customers[(DS, "lead-1")]["lead_created_at"] = "2025-01-01T10:00:00.000Z"  # the API's echo form
    outcome = client.upsert_customer(customer(city="Hamburg", lead_created_at="2025-01-01T10:00:00Z"))
    assert (outcome.created, outcome.updated) == (False, True)
    assert fake.customers[(DS, "lead-1")]["city"] == "Hamburg"
    patches = [p for m, p in fake.requests if m == "PATCH"]
    assert patches == [f"/v1/customers/{outcome.uuid}"]


def test_existing_identical_customer_is_left_alone(client, fake):
    client.upsert_customer(customer())
    outcome = client.upsert_customer(customer())
    assert (outcome.created, outcome.updated) == (False, False)
    assert fake.count("PATCH", "/") == 0


def test_lost_answer_then_already_exists_counts_as_our_create(client, fake):
    # The first POST lands but its answer is lost; the lookup misses it (e.g. replication lag);
    # the re-send is told "already exists": that is still our create, not someone else's.
    fake.faults.add("POST", "/v1/customers", AFTER_500)
    fake.faults.add("GET", "/v1/customers", None)
    original_list = fake._list
    calls = {"n": 0}

    def lagging_list(table, params, key):
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(200, json={key: [], "has_more": False, "cursor": None})
        return original_list(table, params, key)

    fake._list = lagging_list
    outcome = client.upsert_customer(customer())
    assert outcome.created and len(fake.customers) == 1


def test_plans_get_the_same_guarantees(client, fake):
    plan = {
        "data_source_uuid": DS,
        "external_id": "gold",
        "name": "Gold",
        "interval_count": 1,
        "interval_unit": "month",
    }
    fake.faults.add("POST", "/v1/plans", AFTER_DROP)
    assert client.upsert_plan(plan).created
    again = client.upsert_plan({**plan, "name": "Gold+"})
    assert (again.created, again.updated) == (False, True)
    assert len(fake.plans) == 1 and fake.plans[(DS, "gold")]["name"] == "Gold+"


def test_plain_create_refuses_a_duplicate(client, fake):
    client.create_customer(customer())
    with pytest.raises(ValidationError, match="already exists"):
        client.create_customer(customer())


# ---- permanent errors


def test_validation_error_surfaces_at_once_with_the_api_message(client, fake):
    with pytest.raises(ValidationError) as raised:
        client.create_customer({"data_source_uuid": DS, "name": "No id"})
    assert (raised.value.status, raised.value.field) == (422, "external_id")
    assert "A unique external ID is required." in str(raised.value)
    # At once: one request, and no wait (the client only ever waits before another request).
    assert fake.count("POST", "/v1/customers") == 1


def test_422_is_never_retried(client, fake):
    client.create_customer(customer())
    fake.requests.clear()
    with pytest.raises(ValidationError):
        client.create_customer(customer())
    assert fake.count("POST", "/v1/customers") == 1


def test_wrong_key_is_an_authentication_error_without_the_key():
    fake = FakeChartMogul()
    wrong = "wrong-key-0123456789"
    with (
        ChartMogulClient(
            base_url="https://x.test", api_key=wrong, retry=FAST_RETRY, transport=fake.transport()
        ) as c,
        pytest.raises(AuthenticationError) as raised,
    ):
        c.ping()
    assert "No valid API key provided" in str(raised.value)
    assert wrong not in str(raised.value) and wrong not in repr(raised.value)
    assert len(fake.requests) == 1


# ---- retries, Retry-After, circuit


def test_429_with_retry_after_waits_as_told(client, fake):
    fake.faults.retry_after = "0.3"
    fake.faults.add("GET", "/v1/ping", BEFORE_429)
    started = time.monotonic()
    assert client.ping()
    assert time.monotonic() - started >= 0.29


def test_429_without_retry_after_backs_off_and_succeeds(client, fake):
    fake.faults.add("GET", "/v1/ping", BEFORE_429, BEFORE_429, BEFORE_429)
    assert client.ping()
    assert fake.count("GET", "/v1/ping") == 4


def test_retries_are_bounded(client, fake):
    fake.faults.add("GET", "/v1/ping", *[BEFORE_429] * 10)
    with pytest.raises(RateLimitedError):
        client.ping()
    assert fake.count("GET", "/v1/ping") == FAST_RETRY.max_attempts


def test_circuit_opens_when_the_api_keeps_refusing(fake):
    fake.faults.add("GET", "/v1/customers", *[BEFORE_503] * 1000)
    with ChartMogulClient(
        base_url="https://x.test",
        api_key=fake.api_key,
        requests_per_second=10_000,
        retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001),
        circuit_threshold=3,
        transport=fake.transport(),
    ) as c:
        for _ in range(3):
            with pytest.raises(TransientError):
                c.find_customer(DS, "x")
        sent = len(fake.requests)
        with pytest.raises(CircuitOpenError, match="in a row"):
            c.find_customer(DS, "x")
        assert len(fake.requests) == sent  # refused without asking the API, so without waiting for it


# ---- invoices


@pytest.mark.parametrize("mode", ["all_or_nothing", "partial"])
def test_invoice_import_sorts_existing_bad_and_good_invoices(client, fake, mode):
    fake.invoice_batch_mode = mode
    client.import_invoices("cus_1", [invoice("old")])
    result = client.import_invoices("cus_1", [invoice("old"), invoice("bad", currency="XXX"), invoice("new")])
    assert set(result.already_present) == {"old"}
    assert result.errors == {"bad": "currency: Currency is invalid"}
    assert set(result.imported) == {"new"}
    assert result.imported["new"] == fake.invoices[(DS, "new")]["uuid"]
    assert len(fake.invoices) == 2  # old + new, nothing twice


@pytest.mark.parametrize("fault", [AFTER_500, AFTER_DROP])
def test_invoice_import_whose_answer_was_lost_is_not_doubled(client, fake, fault):
    fake.faults.add("POST", "/v1/import/", fault)
    result = client.import_invoices("cus_1", [invoice("a"), invoice("b")])
    assert set(result.imported) == {"a", "b"} and not result.errors
    assert len(fake.invoices) == 2
    assert fake.count("POST", "/v1/import/") == 1


def test_invoice_import_refused_before_landing_is_resent(client, fake):
    fake.faults.add("POST", "/v1/import/", BEFORE_503)
    result = client.import_invoices("cus_1", [invoice("a")])
    assert set(result.imported) == {"a"}
    assert fake.count("POST", "/v1/import/") == 2


def test_invoices_need_external_ids(client):
    with pytest.raises(ValueError, match="external_id"):
        client.import_invoices("cus_1", [{"currency": "EUR"}])


# ---- bulk


def test_run_json_import_polls_until_completed(client, fake):
    final = client.run_json_import(
        DS, {"external_id": "imp-1", "customers": []}, poll_interval=0.01, timeout=5
    )
    assert final["status"] == "completed"


def test_run_json_import_follows_an_import_a_retried_task_already_submitted(client, fake):
    client.create_json_import(DS, {"external_id": "imp-1", "customers": []})
    final = client.run_json_import(
        DS, {"external_id": "imp-1", "customers": []}, poll_interval=0.01, timeout=5
    )
    assert final["status"] == "completed"
    assert len(fake.json_imports) == 1


def test_json_import_whose_answer_was_lost_is_not_submitted_twice(client, fake):
    fake.faults.add("POST", f"/v1/data_sources/{DS}/json_imports", AFTER_DROP)
    client.create_json_import(DS, {"external_id": "imp-1"})
    assert fake.count("POST", f"/v1/data_sources/{DS}/json_imports") == 1


def test_missing_bulk_endpoint_is_a_distinct_error(client, fake):
    fake.json_imports_supported = False
    with pytest.raises(BulkImportUnsupportedError):
        client.create_json_import(DS, {"external_id": "imp-1"})


# ---- reads


def test_pagination_follows_has_more_and_ignores_unknown_keys():
    pages = {
        None: {
            "entries": [{"uuid": "c1"}],
            "has_more": True,
            "cursor": "p2",
            "current_page": 1,
            "total_pages": 9,
        },
        "p2": {"entries": [{"uuid": "c2"}], "has_more": False, "cursor": "p3-not-null", "new_key": {"x": 1}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with ChartMogulClient(
        base_url="https://x.test", api_key="k" * 12, transport=httpx.MockTransport(handler)
    ) as c:
        assert [e["uuid"] for e in c.iter_customers()] == ["c1", "c2"]


def test_email_search_without_match_is_empty():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, json={"code": 404, "message": "Can't find any customers", "param": "email"}
        )

    with ChartMogulClient(
        base_url="https://x.test", api_key="k" * 12, transport=httpx.MockTransport(handler)
    ) as c:
        assert c.search_customers("no@example.com") == []


def test_changed_fields_compares_timestamps_as_instants_and_empty_as_null():
    intended = {"external_id": "x", "lead_created_at": "2025-01-01 10:00:00 UTC", "zip": "", "city": "Berlin"}
    existing = {
        "external_id": "x",
        "lead_created_at": "2025-01-01T10:00:00.000Z",
        "zip": None,
        "city": "Bonn",
    }
    assert changed_fields(existing, intended, skip=frozenset({"external_id"})) == {"city": "Berlin"}


# ---- the key stays secret


SECRET = "sk_test_SUPERSECRET_0123456789"


def test_key_is_never_in_repr_or_str():
    settings = ClientSettings(base_url="https://x.test", api_key=SECRET)
    client = ChartMogulClient.from_settings(settings)
    for text in (repr(settings), str(settings), repr(client), str(client)):
        assert SECRET not in text
    client.close()


def test_key_is_never_in_logs_or_errors(caplog):
    fake = FakeChartMogul(api_key=SECRET)
    fake.faults.add("GET", "/v1/ping", BEFORE_503, AFTER_DROP)
    caplog.set_level(logging.DEBUG)
    with ChartMogulClient(
        base_url="https://x.test", api_key=SECRET, retry=FAST_RETRY, transport=fake.transport()
    ) as c:
        c.ping()
        with pytest.raises(ValidationError) as raised:
            c.create_customer({"data_source_uuid": DS, "external_id": None, "name": SECRET[:5]})
    assert "retrying" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in str(raised.value)


# ---- the async twin


def test_async_client_has_the_same_guarantees(fake):
    fake.faults.add("POST", "/v1/customers", AFTER_DROP)

    async def scenario() -> tuple[bool, int]:
        async with AsyncChartMogulClient(
            base_url="https://x.test",
            api_key=fake.api_key,
            requests_per_second=10_000,
            retry=FAST_RETRY,
            transport=fake.transport(),
        ) as c:
            outcome = await c.upsert_customer(customer())
            uuids = [e["uuid"] async for e in c.iter_customers(data_source_uuid=DS)]
            return outcome.created, len(uuids)

    assert asyncio.run(scenario()) == (True, 1)
    assert len(fake.customers) == 1
