"""A million-customer account, seeded through the fast path: the warehouse, the sync state, the sandbox.

What `bench_million.py` measures against. Nothing here goes through the API:

- `build_warehouse`: `leads` leads with one trial each on one of `PLANS` plans, generated in SQL.
- `seed_sync_state`: the sync state a first load of that warehouse leaves behind, written straight
  into `mogulflow_sync_state`: each row's payload built and hashed by mogulflow's own transform, and a
  uuid made from the row's number (`customer_uuid`, `invoice_uuid`, `plan_uuid`).
- `seed_sandbox`: the same account in a sandbox's store (`SandboxState.add_records`), read back from
  that sync state, so that ChartMogul holds exactly what mogulflow remembers sending.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

PLANS = 20
DATA_SOURCE_UUID = "ds_00000000-0000-4000-8000-000000000001"
DATA_SOURCE_NAME = "Leads"
SEED_RUN_ID = "seed"
CHUNK_ROWS = 100_000
# The seeded rows' version, and the day the nightly run's changes carry.
SEEDED_UPDATED_AT = datetime(2025, 1, 3)
CHANGED_AT = datetime(2025, 11, 1, 12)


def customer_uuid(number: int) -> str:
    """The uuid of lead number `number`'s customer (a valid `cus_<uuid>`, as the API's)."""
    return f"cus_00000000-0000-4000-8000-{number:012d}"


def invoice_uuid(number: int) -> str:
    """The uuid of trial number `number`'s invoice."""
    return f"inv_00000000-0000-4000-8000-{number:012d}"


def plan_uuid(number: int) -> str:
    """The uuid of plan number `number`."""
    return f"pl_00000000-0000-4000-8000-{number:012d}"


def build_warehouse(path: Path, leads: int) -> None:
    """`leads` valid leads, one trial each on one of `PLANS` plans (generated in SQL, in seconds)."""
    from mogulflow.warehouse.sql_files import read_sql

    with duckdb.connect(str(path)) as connection:
        connection.execute(read_sql("schema.sql"))
        connection.execute(
            f"""
            INSERT INTO plans SELECT 'plan_' || i, 'Plan ' || i, 1, 'month', TIMESTAMP '2025-01-01'
            FROM range({PLANS}) t(i);
            INSERT INTO leads SELECT printf('lead_%07d', i), 'Company ' || i,
                'owner' || i || '@c' || i || '.example',
                'US', 'CA', 'San Francisco', '94107',
                TIMESTAMP '2025-01-01' + INTERVAL (i % 5000) MINUTE,
                TIMESTAMP '2025-01-02' + INTERVAL (i % 5000) MINUTE,
                TIMESTAMP '{SEEDED_UPDATED_AT}'
            FROM range({leads}) t(i);
            INSERT INTO trials SELECT printf('trial_%07d', i), printf('lead_%07d', i),
                'plan_' || (i % {PLANS}),
                printf('sub_%07d', i), TIMESTAMP '2025-01-02' + INTERVAL (i % 5000) MINUTE,
                TIMESTAMP '2025-01-16' + INTERVAL (i % 5000) MINUTE, 0, 'USD', 1,
                TIMESTAMP '{SEEDED_UPDATED_AT}'
            FROM range({leads}) t(i);
            """
        )


def change_rows(path: Path, every: int) -> tuple[int, int]:
    """Every `every`-th lead gets a new e-mail, a different `every`-th trial a new quantity, both
    updated at `CHANGED_AT`: one day's changes. Answers how many leads and trials changed."""
    with duckdb.connect(str(path)) as connection:
        leads = connection.execute(
            "UPDATE leads SET email = 'new.' || lead_id || '@bench.example', "
            f"updated_at = TIMESTAMP '{CHANGED_AT}' WHERE CAST(substr(lead_id, 6) AS INTEGER) % {every} = 0"
        ).fetchone()
        trials = connection.execute(
            f"UPDATE trials SET quantity = 2, updated_at = TIMESTAMP '{CHANGED_AT}' "
            f"WHERE CAST(substr(trial_id, 7) AS INTEGER) % {every} = 1"
        ).fetchone()
    return int(leads[0]), int(trials[0])  # type: ignore[index]


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _number(external_id: str) -> int:
    return int(external_id.rsplit("_", 1)[1])


def _state_rows(connection: Any, entity: str) -> Iterator[pd.DataFrame]:
    """The sync-state rows of one entity, chunk by chunk, payloads built and hashed by mogulflow."""
    from mogulflow.transform.payloads import CustomerPayload, PlanPayload, TrialInvoice
    from mogulflow.values.payload_hash import content_hash
    from mogulflow.warehouse.json_columns import as_json_text

    query, build, uuid_of = {
        "plan": (
            "SELECT plan_id, name, interval_count, interval_unit FROM plans ORDER BY plan_id",
            lambda r: PlanPayload(r[0], r[1], int(r[2]), r[3]),
            plan_uuid,
        ),
        "lead": (
            "SELECT lead_id, company_name, email, country, state, city, zip, lead_created_at, "
            "free_trial_started_at FROM leads ORDER BY lead_id",
            lambda r: CustomerPayload(*r[:7], _utc(r[7]), _utc(r[8])),
            customer_uuid,
        ),
        "trial": (
            "SELECT trial_id, lead_id, plan_id, coalesce(subscription_id, trial_id), started_at, ends_at, "
            "amount_in_cents, upper(currency), quantity FROM trials ORDER BY trial_id",
            lambda r: TrialInvoice(*r[:4], _utc(r[4]), _utc(r[5]), int(r[6]), r[7], int(r[8])),
            invoice_uuid,
        ),
    }[entity]
    cursor = connection.execute(query)
    while rows := cursor.fetchmany(CHUNK_ROWS):
        payloads = [build(row) for row in rows]
        fields = [payload.fields() for payload in payloads]
        yield pd.DataFrame(
            {
                "entity": entity,
                "data_source_uuid": DATA_SOURCE_UUID,
                "external_id": [p.external_id for p in payloads],
                "chartmogul_uuid": [uuid_of(_number(p.external_id)) for p in payloads],
                "content_hash": [content_hash(f) for f in fields],
                "payload": [as_json_text(f) for f in fields],
                "status": "synced",
                "synced_at": SEEDED_UPDATED_AT,
                "run_id": SEED_RUN_ID,
                "source_updated_at": SEEDED_UPDATED_AT,
            }
        )


def seed_sync_state(path: Path) -> dict[str, int]:
    """Write the sync state a first load of the warehouse leaves: every plan, lead and trial synced."""
    from mogulflow.warehouse.connection import Warehouse
    from mogulflow.warehouse.own_tables import ensure_tables

    warehouse = Warehouse.open_duckdb(str(path))
    try:
        ensure_tables(warehouse)
    finally:
        warehouse.close()
    counts: dict[str, int] = {}
    with duckdb.connect(str(path)) as connection:
        reader = connection.cursor()  # reads the source tables while `connection` writes the state
        for entity in ("plan", "lead", "trial"):
            counts[entity] = 0
            for frame in _state_rows(reader, entity):
                connection.register("seed_rows", frame)
                connection.execute("INSERT INTO mogulflow_sync_state BY NAME SELECT * FROM seed_rows")
                connection.unregister("seed_rows")
                counts[entity] += len(frame)
    return counts


# ---- the sandbox's side -------------------------------------------------------------------------


def _api_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def seed_sandbox(state: Any, warehouse_path: Path) -> int:
    """Fill a `SandboxState` with the account the sync state says mogulflow synced (fast path)."""
    from mogulflow_sandbox.records import (
        CustomerRecord,
        DataSourceRecord,
        InvoiceRecord,
        LineItemRecord,
        PlanRecord,
    )

    created = datetime(2025, 1, 3, tzinfo=UTC)
    added = state.add_records(
        [DataSourceRecord(uuid=DATA_SOURCE_UUID, name=DATA_SOURCE_NAME, system="Custom", created_at=created)]
    )
    plan_uuids: dict[str, str] = {}
    sequence = 0
    with duckdb.connect(str(warehouse_path), read_only=True) as connection:

        def rows(entity: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
            cursor = connection.execute(
                "SELECT external_id, chartmogul_uuid, payload FROM mogulflow_sync_state "
                "WHERE entity = ? ORDER BY external_id",
                [entity],
            )
            while chunk := cursor.fetchmany(CHUNK_ROWS):
                for external_id, uuid, payload in chunk:
                    yield external_id, uuid, json.loads(payload)

        plans = []
        for external_id, uuid, fields in rows("plan"):
            sequence += 1
            plan_uuids[external_id] = uuid
            plans.append(
                PlanRecord(
                    uuid=uuid,
                    data_source_uuid=DATA_SOURCE_UUID,
                    external_id=external_id,
                    seq=sequence,
                    **fields,
                )
            )
        added += state.add_records(plans)

        def customers() -> Iterator[CustomerRecord]:
            for external_id, uuid, fields in rows("lead"):
                number = _number(external_id)
                yield CustomerRecord(
                    id=number + 1,
                    uuid=uuid,
                    data_source_uuid=DATA_SOURCE_UUID,
                    external_id=external_id,
                    name=fields["name"],
                    created_at=created,
                    email=fields["email"] or "",
                    country=fields["country"],
                    state=fields["state"],
                    city=fields["city"],
                    zip=fields["zip"],
                    lead_created_at=_api_time(fields["lead_created_at"]),
                    free_trial_started_at=_api_time(fields["free_trial_started_at"]),
                    identities=[(DATA_SOURCE_UUID, external_id)],
                )

        added += state.add_records(customers())

        def invoices() -> Iterator[InvoiceRecord]:
            nonlocal sequence
            for external_id, uuid, fields in rows("trial"):
                number = _number(external_id)
                sequence += 1
                start, end = (
                    _api_time(fields["service_period_start"]),
                    _api_time(fields["service_period_end"]),
                )
                item = LineItemRecord(
                    uuid=f"li_00000000-0000-4000-8000-{number:012d}",
                    type="trial",
                    external_id=external_id,
                    amount_in_cents=fields["amount_in_cents"],
                    quantity=fields["quantity"],
                    plan_uuid=plan_uuids[fields["plan_external_id"]],
                    subscription_external_id=fields["subscription_external_id"],
                    subscription_uuid=f"sub_00000000-0000-4000-8000-{number:012d}",
                    service_period_start=start,
                    service_period_end=end,
                )
                yield InvoiceRecord(
                    uuid=uuid,
                    external_id=external_id,
                    data_source_uuid=DATA_SOURCE_UUID,
                    customer_uuid=customer_uuid(_number(fields["customer_external_id"])),
                    customer_external_id=fields["customer_external_id"],
                    date=_api_time(fields["date"]),  # type: ignore[arg-type]
                    currency=fields["currency"],
                    seq=sequence,
                    line_items=[item],
                )

        added += state.add_records(invoices())
    return added
