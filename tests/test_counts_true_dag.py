"""The issue's story end to end under `airflow dags test` (issue 17): an invoice is deleted and imported
again in ChartMogul with another amount; the reconciliation finds it `different`, a resend and the next
sync put the right amount back, and every run's account is honest on the way.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest
from airflow_setup import FULL_REFRESH_CONF
from direct_sync import assert_account_adds_up, query, run_row
from repo_paths import REPO
from test_counts_true import applied_since, invoice, reimport_by_hand, seq, writes_since
from test_reconcile import customer_uuid

from mogulflow.values.entities import Entity

pytestmark = pytest.mark.slow

LEADS_DAG = "chartmogul_leads_trials"
RECONCILE_DAG = "chartmogul_reconcile"


def dags_test(dag_id: str, conf: dict) -> str:
    """`airflow dags test DAG_ID --conf ...` as an outside suite runs it; the run id it made."""
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "airflow"), "dags", "test", dag_id, "--conf", json.dumps(conf)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def last_run(warehouse_path, dag_id: str) -> dict:
    [(run_id,)] = query(
        warehouse_path,
        "SELECT run_id FROM mogulflow_runs WHERE dag_id = ? ORDER BY started_at DESC LIMIT 1",
        [dag_id],
    )
    return run_row(warehouse_path, run_id)


def assert_sync_counts_are_what_was_applied(row: dict, applied: dict) -> None:
    assert_account_adds_up(row)
    for entity, prefix in ((Entity.LEAD, "leads"), (Entity.PLAN, "plans"), (Entity.TRIAL, "trials")):
        tally = Counter(applied[entity].values())
        assert (row[f"{prefix}_created"], row[f"{prefix}_updated"]) == (tally["created"], tally["updated"]), (
            entity,
            applied[entity],
        )
        assert row[f"{prefix}_failed"] == 0


def test_an_invoice_reimported_with_another_amount_is_repaired_by_reconcile_resend_and_a_full_sync(
    airflow_db, connections, sandbox, warehouse_path
):
    # 1. the first sync
    before = seq(sandbox)
    dags_test(LEADS_DAG, dict(FULL_REFRESH_CONF))
    ds = sandbox.state.data_source_by_name("Leads")["uuid"]
    first = last_run(warehouse_path, LEADS_DAG)
    assert first["outcome"] == "success_with_rejects"
    assert_sync_counts_are_what_was_applied(first, applied_since(sandbox, before, ds))

    # 2. behind mogulflow's back: T1 deleted and imported again with another amount (another uuid)
    by_hand = reimport_by_hand(sandbox, ds, "T1", amount_in_cents=4200)

    # 3. the reconciliation finds it, and writes nothing
    before = seq(sandbox)
    dags_test(RECONCILE_DAG, {"data_source_name": "Leads", "resend": False})
    assert writes_since(sandbox, before) == []
    found = query(
        warehouse_path,
        "SELECT entity, external_id, kind, field, warehouse_value, chartmogul_value "
        "FROM mogulflow_reconciliation",
    )
    assert found == [("trial", "T1", "different", "amount_in_cents", "0", "4200")]
    reconciled = last_run(warehouse_path, RECONCILE_DAG)
    assert (reconciled["outcome"], reconciled["trials_unchanged"], reconciled["trials_failed"]) == (
        "failed",
        2,
        1,
    )

    # 4. resend marks it; 5. the next full sync replaces the invoice found under T1, not the old uuid
    dags_test(RECONCILE_DAG, {"data_source_name": "Leads", "resend": True})
    before = seq(sandbox)
    dags_test(LEADS_DAG, dict(FULL_REFRESH_CONF))
    repair = last_run(warehouse_path, LEADS_DAG)
    assert writes_since(sandbox, before) == [
        ("DELETE", f"/v1/invoices/{by_hand['uuid']}", 204),
        ("POST", f"/v1/import/customers/{customer_uuid(sandbox, ds, 'L1')}/invoices", 201),
    ]
    assert (repair["trials_updated"], repair["trials_failed"], repair["outcome"]) == (
        1,
        0,
        "success_with_rejects",
    )
    assert_sync_counts_are_what_was_applied(repair, applied_since(sandbox, before, ds))
    assert invoice(sandbox, ds, "T1")["line_items"][0]["amount_in_cents"] == 0

    # 6. ChartMogul agrees again
    dags_test(RECONCILE_DAG, {"data_source_name": "Leads", "resend": False})
    agreed = last_run(warehouse_path, RECONCILE_DAG)
    assert agreed["outcome"] == "success", agreed["message"]
    assert (agreed["trials_unchanged"], agreed["trials_failed"]) == (3, 0)
