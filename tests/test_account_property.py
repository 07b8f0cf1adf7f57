"""A property of the account (issue 17): whatever ChartMogul went through, every run's counts are what the
sandbox's request log shows the run applied, and after a reconciliation with resend and the next sync,
ChartMogul holds again what mogulflow synced (no `missing`, no `different` row).

Hypothesis draws sequences of steps, with a fixed seed: syncs (full refresh, or a window that holds no
source row, so that only rows marked for re-sending are read), edits of the warehouse, changes made in
ChartMogul behind mogulflow's back (delete an invoice or a customer, re-import an invoice with another
amount, patch a lead date, merge a lead into another customer as ChartMogul's automatic merging does),
reconciliations, and resends each followed by a sync. Airflow-free (`direct_sync`), against one sandbox.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
from direct_sync import API_KEY, assert_account_adds_up, run_row, run_sync_account, sandbox_client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from repo_paths import REPO
from test_counts_true import applied_since, seq
from test_reconcile import QUIET_WINDOW

from mogulflow.reconcile.compare import DifferenceKind, reconcile
from mogulflow.reconcile.run import ReconcileRequest, run_reconciliation
from mogulflow.values.entities import Entity
from mogulflow.warehouse.connection import Warehouse

# 225 generated steps take about 2 minutes on a quiet 2-core machine and 4.3 at a load average of 9
# (measured): past the suite's 300 s hang guard, which is for a hang, not for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

EXAMPLES = 5
STEPS_PER_EXAMPLE = 45  # 225 generated steps in all (the issue asks for at least 200)
LEADS = [f"L{i}" for i in range(6)]
PLANS = ["P0", "P1", "P2"]
TRIALS = [(f"T{i}", LEADS[i % len(LEADS)], PLANS[i % len(PLANS)]) for i in range(8)]
START = datetime(2025, 3, 1)
WRITES = {"POST", "PUT", "PATCH", "DELETE"}

leads = st.sampled_from(LEADS)
trials = st.sampled_from([t for t, _, _ in TRIALS])
STEP = st.one_of(
    st.tuples(st.just("sync"), st.sampled_from(["full", "quiet"])),
    st.tuples(st.just("edit_lead_email"), leads),
    st.tuples(st.just("edit_trial_amount"), trials, st.integers(0, 5000)),
    st.tuples(st.just("edit_plan_name"), st.sampled_from(PLANS)),
    st.tuples(st.just("delete_invoice"), trials),
    st.tuples(st.just("reimport_invoice"), trials, st.integers(1, 9999)),
    st.tuples(st.just("patch_lead_date"), leads, st.integers(1, 28)),
    st.tuples(st.just("delete_customer"), leads),
    st.tuples(st.just("merge_lead"), leads),
    st.tuples(st.just("reconcile"), st.booleans()),
)


class Story:
    """One generated sequence: a warehouse, the shared sandbox (emptied), and the checks after each step."""

    def __init__(self, sandbox, folder: Path) -> None:
        self.sandbox = sandbox
        self.path = folder / "warehouse.duckdb"
        self.runs = itertools.count(1)
        self.clock = itertools.count(1)
        self.api = httpx.Client(base_url=sandbox.url + "/v1", auth=(API_KEY, ""), timeout=30)
        build_warehouse(self.path)

    def close(self) -> None:
        self.api.close()

    @property
    def ds(self) -> str:
        return self.sandbox.state.data_source_by_name("Leads")["uuid"]

    def updated_at(self) -> datetime:
        return START + timedelta(days=30, minutes=next(self.clock))

    # ---- the steps -----------------------------------------------------------------------------

    def run(self, step: tuple) -> None:
        getattr(self, step[0])(*step[1:])

    def sync(self, window: str) -> None:
        """A sync, checked: its counts are what the log shows it applied, and they add up."""
        run_id = f"sync_{next(self.runs)}"
        before = seq(self.sandbox)
        params = {"full_refresh": True} if window == "full" else dict(QUIET_WINDOW)
        with sandbox_client(self.sandbox.url) as client:
            account = run_sync_account(self.path, client, run_id=run_id, max_reject_ratio=0.0, **params)
        applied = applied_since(self.sandbox, before, self.ds)
        redated = account.details.lead_dates_from_later_trials
        for entity in (Entity.LEAD, Entity.PLAN, Entity.TRIAL):
            counts = account.summary.counts[entity]
            tally = Counter(applied[entity].values())
            extra_updates = redated.updated if redated is not None and entity is Entity.LEAD else 0
            assert (counts.created, counts.updated + extra_updates) == (tally["created"], tally["updated"]), (
                run_id,
                entity,
                counts,
                applied[entity],
            )
            assert counts.rejected == 0
        for error_entity, errors in account.details.api_errors.items():
            for error in errors:  # a failed row is one ChartMogul did not end up holding as written
                assert applied[error_entity].get(error.external_id) not in ("created", "updated"), error
        assert_account_adds_up(run_row(self.path, run_id))

    def reconcile(self, resend: bool) -> None:
        """A reconciliation writes nothing to ChartMogul; with resend, the next sync repairs exactly."""
        before = seq(self.sandbox)
        with sandbox_client(self.sandbox.url) as client:
            warehouse = Warehouse.open_duckdb(str(self.path))
            try:
                run_id = f"reconcile_{next(self.runs)}"
                request = ReconcileRequest(run_id, "chartmogul_reconcile", "Leads", resend, datetime.now(UTC))
                run_reconciliation(warehouse, client, request)
            finally:
                warehouse.close()
        assert [r for r in self.sandbox.requests if r.seq > before and r.method in WRITES] == []
        if not resend:
            return
        self.sync("quiet")
        with sandbox_client(self.sandbox.url) as client:
            warehouse = Warehouse.open_duckdb(str(self.path))
            try:
                found = reconcile(warehouse, client, self.ds)
            finally:
                warehouse.close()
        left = [d for d in found.differences if d.kind in (DifferenceKind.MISSING, DifferenceKind.DIFFERENT)]
        assert left == [], left

    def edit_lead_email(self, lead_id: str) -> None:
        email = f"{lead_id.lower()}-{next(self.clock)}@example.com"
        self.execute("UPDATE leads SET email = ?, updated_at = ? WHERE lead_id = ?", email, lead_id)

    def edit_trial_amount(self, trial_id: str, amount: int) -> None:
        self.execute(
            "UPDATE trials SET amount_in_cents = ?, updated_at = ? WHERE trial_id = ?", amount, trial_id
        )

    def edit_plan_name(self, plan_id: str) -> None:
        self.execute(
            "UPDATE plans SET name = ?, updated_at = ? WHERE plan_id = ?", f"Plan {next(self.clock)}", plan_id
        )

    def execute(self, sql: str, value: object, key: str) -> None:
        with duckdb.connect(str(self.path)) as warehouse:
            warehouse.execute(sql, [value, self.updated_at(), key])

    # ---- ChartMogul changed behind mogulflow's back (nothing to do before the first sync) -----------

    def invoice(self, trial_id: str) -> dict | None:
        found = self.sandbox.state.invoices(data_source_uuid=self.ds)
        return next((i for i in found if i["external_id"] == trial_id), None)

    def delete_invoice(self, trial_id: str) -> None:
        if self.synced() and (invoice := self.invoice(trial_id)) is not None:
            self.api.delete(f"/invoices/{invoice['uuid']}").raise_for_status()

    def reimport_invoice(self, trial_id: str, amount: int) -> None:
        if not self.synced() or (old := self.invoice(trial_id)) is None:
            return
        self.api.delete(f"/invoices/{old['uuid']}").raise_for_status()
        line = {k: v for k, v in old["line_items"][0].items() if k != "uuid"} | {"amount_in_cents": amount}
        body = {
            key: old[key]
            for key in ("external_id", "date", "currency", "data_source_uuid", "customer_external_id")
        }
        self.api.post(
            f"/import/customers/{old['customer_uuid']}/invoices",
            json={"invoices": [{**body, "line_items": [line]}]},
        ).raise_for_status()

    def patch_lead_date(self, lead_id: str, day: int) -> None:
        if self.synced() and (customer := self.sandbox.state.find_customer(self.ds, lead_id)) is not None:
            date = f"2025-01-{day:02d}T00:00:00Z"
            self.api.patch(
                f"/customers/{customer['uuid']}", json={"lead_created_at": date}
            ).raise_for_status()

    def delete_customer(self, lead_id: str) -> None:
        if self.synced() and (customer := self.sandbox.state.find_customer(self.ds, lead_id)) is not None:
            self.api.delete(f"/customers/{customer['uuid']}").raise_for_status()

    def merge_lead(self, lead_id: str) -> None:
        """ChartMogul's automatic merging folds the lead into a billing customer with a matching domain."""
        if not self.synced() or self.sandbox.state.find_customer(self.ds, lead_id) is None:
            return
        billing = self.sandbox.state.data_source_by_name("Stripe") or self.sandbox.state.create_data_source(
            "Stripe", system="Stripe"
        )
        paying = self.sandbox.state.create_customer(
            data_source_uuid=billing["uuid"], external_id=f"cus_{next(self.clock)}", status="Active"
        )
        self.sandbox.state.merge_now(
            {
                "from": {"data_source_uuid": self.ds, "external_id": lead_id},
                "into": {"customer_uuid": paying["uuid"]},
            }
        )

    def synced(self) -> bool:
        return self.sandbox.state.data_source_by_name("Leads") is not None


def build_warehouse(path: Path) -> None:
    """Six leads, three plans, eight trials, every row valid (rejects are another test's business)."""
    with duckdb.connect(str(path)) as warehouse:
        warehouse.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        for n, lead_id in enumerate(LEADS):
            created = START + timedelta(days=n)
            warehouse.execute(
                "INSERT INTO leads VALUES (?, ?, ?, 'US', NULL, NULL, NULL, ?, ?, ?)",
                [lead_id, f"Company {lead_id}", f"{lead_id.lower()}@example.com", created, created, created],
            )
        for plan_id in PLANS:
            warehouse.execute(
                "INSERT INTO plans VALUES (?, ?, 1, 'month', ?)", [plan_id, f"Plan {plan_id}", START]
            )
        for n, (trial_id, lead_id, plan_id) in enumerate(TRIALS):
            started = START + timedelta(days=LEADS.index(lead_id), hours=n)
            warehouse.execute(
                "INSERT INTO trials VALUES (?, ?, ?, NULL, ?, ?, 0, 'USD', 1, ?)",
                [trial_id, lead_id, plan_id, started, started + timedelta(days=14), started],
            )


@pytest.fixture(scope="module")
def shared_sandbox():
    from mogulflow_sandbox import SandboxServer

    with SandboxServer(port=0, merge_delay_seconds=0.0, json_import_delay_seconds=0.05) as server:
        yield server


STEPS_RUN: list[int] = []


@seed(17)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(steps=st.lists(STEP, min_size=STEPS_PER_EXAMPLE, max_size=STEPS_PER_EXAMPLE))
def test_every_runs_counts_are_what_chartmogul_applied_and_resend_repairs_exactly(
    shared_sandbox, tmp_path_factory, steps
):
    shared_sandbox.reset()
    story = Story(shared_sandbox, tmp_path_factory.mktemp("story"))
    try:
        story.sync("full")
        for step in steps:
            story.run(step)
            STEPS_RUN.append(1)
        story.reconcile(resend=True)  # whatever happened, a resend and a sync put it right
    finally:
        story.close()


def test_the_property_ran_at_least_200_generated_steps():
    if not STEPS_RUN:
        pytest.skip("the property test did not run in this session")
    assert len(STEPS_RUN) >= 200
