"""The merge trigger shares the triggerer's event loop with every other trigger of a deployment: it
must never block it. Run it in a fresh interpreter (nothing of mogulflow imported yet, as in a
triggerer), against the sandbox with latency, and record what the event loop's own thread does that
blocks it: an import, a blocking socket call, a `time.sleep`. asyncio's debug mode backs that up
with any callback that held the loop for a whole second (a tenth, as before, a busy machine can
take for a callback that blocks nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from repo_paths import REPO

from mogulflow.merge.paying_customers import BillingKey
from mogulflow.values.json_form import to_json
from mogulflow_sandbox import Faults, SandboxServer

TRIGGER_RUN = """
import asyncio, io, json, logging, sys, threading, time
from mogulflow.airflow.paying_customers_wait import PayingCustomersTrigger

reported = io.StringIO()
logging.getLogger("asyncio").addHandler(logging.StreamHandler(reported))
blocking = []  # what the event loop's thread did, while the trigger ran, that blocks the loop
watching = threading.Event()
loop_thread = threading.get_ident()


def on_loop() -> bool:
    return watching.is_set() and threading.get_ident() == loop_thread


def audit(event, args):
    if not on_loop():
        return
    if event in ("import", "socket.getaddrinfo"):
        blocking.append(f"{event} {args[0]}")
    elif event == "socket.connect" and args[0].getblocking():  # asyncio's own sockets never block
        blocking.append(f"blocking socket.connect {args[1]}")


sys.addaudithook(audit)
sleep = time.sleep


def watched_sleep(seconds):
    if on_loop():
        blocking.append(f"time.sleep({seconds})")
    sleep(seconds)


time.sleep = watched_sleep
arguments = json.loads(sys.argv[1])
started = time.time()  # as the triggerer starts it: the wait's clock runs from here
trigger = PayingCustomersTrigger(**arguments, started_at=started, deadline=started + 8)


async def main():
    asyncio.get_running_loop().slow_callback_duration = 1.0
    watching.set()
    try:
        async for event in trigger.run():
            return event.payload
    finally:
        watching.clear()


payload = asyncio.run(main(), debug=True)
found, polls = len(payload["found"]), payload["polls"]
print(json.dumps({"found": found, "polls": polls, "blocking": blocking, "asyncio": reported.getvalue()}))
"""


def test_the_merge_trigger_never_blocks_the_triggerers_event_loop(tmp_path):
    with SandboxServer(port=0, api_key="trigger-key", faults=Faults(latency_seconds=0.05)) as sandbox:
        stripe = sandbox.state.create_data_source("Stripe", system="Stripe")["uuid"]
        for number in range(20):
            sandbox.state.create_customer(data_source_uuid=stripe, external_id=f"cus_{number}")
        keys = [to_json(BillingKey(stripe, f"cus_{number}")) for number in range(25)]  # 5 never appear
        arguments = {"keys": keys, "interval": 0.5}
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
    assert answer["blocking"] == [], "\n".join(answer["blocking"])
    assert answer["asyncio"] == "", answer["asyncio"]
