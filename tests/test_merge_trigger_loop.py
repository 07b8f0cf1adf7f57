"""The merge trigger shares the triggerer's event loop with every other trigger of a deployment: it
must never block it. Run it in a fresh interpreter (nothing of mogulflow imported yet, as in a
triggerer), under asyncio's debug mode with a 0.1 s slow-callback threshold, against the sandbox with
latency, and read what asyncio reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from repo_paths import REPO

from mogulflow.merge.paying_customers import BillingKey
from mogulflow.values.json_form import to_json
from mogulflow_sandbox import Faults, SandboxServer

TRIGGER_RUN = """
import asyncio, io, json, logging, sys, time
from mogulflow.airflow.paying_customers_wait import PayingCustomersTrigger

reported = io.StringIO()
logging.getLogger("asyncio").addHandler(logging.StreamHandler(reported))
arguments = json.loads(sys.argv[1])
trigger = PayingCustomersTrigger(**arguments)

async def main():
    asyncio.get_running_loop().slow_callback_duration = 0.1
    async for event in trigger.run():
        return event.payload

payload = asyncio.run(main(), debug=True)
print(json.dumps({"found": len(payload["found"]), "polls": payload["polls"], "asyncio": reported.getvalue()}))
"""


def test_the_merge_trigger_never_blocks_the_triggerers_event_loop(tmp_path):
    with SandboxServer(port=0, api_key="trigger-key", faults=Faults(latency_seconds=0.05)) as sandbox:
        stripe = sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"]
        for number in range(20):
            sandbox.state.create_customer(data_source_uuid=stripe, external_id=f"cus_{number}")
        keys = [to_json(BillingKey(stripe, f"cus_{number}")) for number in range(25)]  # 5 never appear
        arguments = {"keys": keys, "started_at": time.time(), "deadline": time.time() + 8, "interval": 0.5}
        environment = os.environ | {
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(
                {"conn_type": "chartmogul", "host": sandbox.url, "password": "trigger-key"}
            ),
            "PYTHONPATH": str(REPO / "plugins"),
        }
        result = subprocess.run(
            [sys.executable, "-c", TRIGGER_RUN, json.dumps(arguments)],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["found"] == 20 and answer["polls"] >= 2
    assert answer["asyncio"] == "", answer["asyncio"]
