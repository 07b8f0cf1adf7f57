"""Pagination ends even against a server that ignores the cursor it handed out."""

from __future__ import annotations

import httpx

from mogulflow.chartmogul.client import ChartMogulClient


def test_pages_stop_when_the_server_repeats_its_cursor():
    requests: list[httpx.Request] = []

    def same_page_forever(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        body = {"entries": [{"uuid": "cus_1", "external_id": "L1"}], "cursor": "c1", "has_more": True}
        return httpx.Response(200, json=body)

    with ChartMogulClient(
        base_url="http://sandbox.invalid",
        api_key="key-123456",
        requests_per_second=1000,
        transport=httpx.MockTransport(same_page_forever),
    ) as client:
        customers = list(client.iter_customers(data_source_uuid="ds_1"))

    assert len(requests) == 2  # the first page, then the cursor once: the same cursor again ends it
    assert [c["external_id"] for c in customers] == ["L1", "L1"]
