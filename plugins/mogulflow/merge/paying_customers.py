"""Paying customers: find, in ChartMogul, the customers billing integrations create on payment.

They appear some minutes after the payment, so the merge DAG looks them all up once and then,
while some are missing, again every interval until a deadline (`wait_for_paying_customers`, run by
`mogulflow.airflow.paying_customers_wait`'s trigger on the async client, so it tests without
Airflow). Light on purpose (no pandas): the trigger imports it inside the triggerer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mogulflow.chartmogul.client import AsyncChartMogulClient
from mogulflow.chartmogul.errors import AuthenticationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class BillingKey:
    """Who the paying customer is: its external id in the billing integration's data source."""

    data_source_uuid: str
    external_id: str

    def __str__(self) -> str:
        return f"{self.external_id!r} in data source {self.data_source_uuid}"


@dataclass(frozen=True)
class PayingCustomer:
    """A paying customer found in ChartMogul, with every identity merged into it so far."""

    key: BillingKey
    uuid: str
    data_source_uuids: tuple[str, ...] = ()
    external_ids: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, key: BillingKey, body: Mapping[str, Any]) -> PayingCustomer:
        """Build from a customer as `GET /v1/customers` returns it."""
        return cls(
            key=key,
            uuid=str(body["uuid"]),
            data_source_uuids=tuple(str(s) for s in body.get("data_source_uuids") or () if s),
            external_ids=tuple(str(i) for i in body.get("external_ids") or () if i is not None),
        )

    def holds(self, data_source_uuid: str, external_id: str) -> bool:
        """Whether ChartMogul already merged that identity (e.g. our lead) into this customer."""
        return data_source_uuid in self.data_source_uuids and external_id in self.external_ids

    def describe(self) -> str:
        """`cus_… (records: ds_…/cus_9, ds_…/lead_1)`, as `mogulflow.chartmogul.shapes` names customers."""
        pairs = zip(self.data_source_uuids, self.external_ids, strict=False)
        records = ", ".join(f"{source}/{external_id}" for source, external_id in pairs)
        return f"{self.uuid} (records: {records})"


@dataclass(frozen=True)
class LookupReport:
    """Where the wait for paying customers ended: who was found, who was still missing, and why."""

    found: tuple[PayingCustomer, ...] = ()
    missing: Mapping[BillingKey, str] = field(default_factory=dict)  # key → last lookup error, or ""
    polls: int = 0
    waited_seconds: float = 0.0


async def look_up_paying_customers(
    client: AsyncChartMogulClient, keys: Iterable[BillingKey]
) -> tuple[dict[BillingKey, PayingCustomer], dict[BillingKey, str]]:
    """One lookup of each key (the client paces and bounds parallelism).

    Returns (found, errors): a key in neither was simply not there. A rejected API key raises.
    """
    keys = list(keys)

    async def find(key: BillingKey) -> Mapping[str, Any] | None:
        return await client.find_customer(key.data_source_uuid, key.external_id)

    answers = await asyncio.gather(*(find(key) for key in keys), return_exceptions=True)
    found: dict[BillingKey, PayingCustomer] = {}
    errors: dict[BillingKey, str] = {}
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, AuthenticationError):
            raise answer
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer
            errors[key] = str(answer) or type(answer).__name__
        elif answer is not None:
            found[key] = PayingCustomer.from_api(key, answer)
    return found, errors


async def wait_for_paying_customers(
    client: AsyncChartMogulClient,
    keys: Iterable[BillingKey],
    *,
    interval: float,
    deadline: float,
    found: Iterable[PayingCustomer] = (),
    polls: int = 0,
    started_at: float | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> LookupReport:
    """Look the missing keys up every `interval` seconds until all are found or `deadline` (epoch
    seconds) passes; always looks at least once.

    `found`, `polls` and `started_at` (epoch seconds) carry what an earlier part of the same wait did.
    """
    started = clock() if started_at is None else started_at
    known = {customer.key: customer for customer in found}
    missing: dict[BillingKey, str] = {key: "" for key in keys if key not in known}
    while missing:
        hits, errors = await look_up_paying_customers(client, list(missing))
        polls += 1
        known.update(hits)
        missing = {key: errors.get(key, "") for key in missing if key not in hits}
        log.info("Paying customers: poll %d found %d, %d still missing", polls, len(hits), len(missing))
        remaining = deadline - clock()
        if not missing or remaining <= 0:
            break
        await sleep(min(interval, remaining))
    return LookupReport(
        found=tuple(known[key] for key in sorted(known)),
        missing=missing,
        polls=polls,
        waited_seconds=clock() - started,
    )
