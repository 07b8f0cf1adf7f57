"""Task defaults both DAGs share. Imported at DAG parse time: keep it free of heavy imports."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

TASK_RETRIES_ENV = "MOGULFLOW_TASK_RETRIES"


def default_args() -> dict[str, Any]:
    """Retries with exponential backoff for lost workers and outages.

    Transient API trouble is retried inside the client. `MOGULFLOW_TASK_RETRIES=0` turns task
    retries off (the test suite does: `dag.test()` sleeps through retry delays).
    """
    return {
        "owner": "data",
        "retries": int(os.environ.get(TASK_RETRIES_ENV, "2")),
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }
