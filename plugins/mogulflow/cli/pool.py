"""`mogulflow pool`: create the `chartmogul_api` pool in the Airflow metadata DB when it is missing."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mogulflow.airflow.resources import POOL_SLOTS, ensure_pool
from mogulflow.values.constants import POOL_NAME


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow pool") -> int:
    """Create the pool (an existing pool keeps its slots)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    parser.add_argument(
        "--slots", type=int, default=POOL_SLOTS, help=f"slots of a new pool (default {POOL_SLOTS})"
    )
    args = parser.parse_args(argv)
    ensure_pool(args.slots)
    print(f"pool {POOL_NAME} ready")
    return 0
