"""``mogulflow sandbox`` (or ``python -m mogulflow_sandbox``): serve the sandbox until stopped.

Stops on SIGINT or SIGTERM, with exit status 0.

Prints ``mogulflow sandbox listening on http://127.0.0.1:PORT`` once the port is bound, so scripts
started with ``--port 0`` can read the port.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from mogulflow_sandbox.faults import Faults
from mogulflow_sandbox.server import DEFAULT_HOST, SandboxServer
from mogulflow_sandbox.settings import (
    DEFAULT_JSON_IMPORT_DELAY_SECONDS,
    DEFAULT_MERGE_DELAY_SECONDS,
    INVOICE_BATCH_MODES,
    Strictness,
)

READY_LINE = "mogulflow sandbox listening on {url}"


def build_parser(prog: str = "mogulflow sandbox") -> argparse.ArgumentParser:
    """The command line: where to listen, how strict to be, which faults to inject."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8999, help="port to listen on; 0 picks a free one")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--api-key", help="accept only this API key (default: any non-empty key)")
    parser.add_argument("--state-file", help="load the state from this JSON file and keep it written there")
    parser.add_argument("--merge-delay-seconds", type=float, default=DEFAULT_MERGE_DELAY_SECONDS)
    parser.add_argument("--json-import-delay-seconds", type=float, default=DEFAULT_JSON_IMPORT_DELAY_SECONDS)
    behaviour = parser.add_argument_group("[UNVERIFIED] behaviour switches")
    behaviour.add_argument("--invoice-batch-mode", choices=INVOICE_BATCH_MODES, default="all_or_nothing")
    behaviour.add_argument(
        "--auto-merge",
        action="store_true",
        help="merge a new customer into an existing one with the same external id (in another data source) "
        "or website domain, as ChartMogul does for accounts created on or after 2024-05-21",
    )
    for flag, help_text in (
        ("check-country-code", "customer country must be ISO 3166-1 alpha-2"),
        ("check-lead-before-trial", "lead_created_at may not lie after free_trial_started_at"),
        ("check-future-timestamps", "no timestamp in the future (5 minutes of clock skew allowed)"),
        ("require-customer-name", "customer name is required"),
    ):
        behaviour.add_argument(
            f"--{flag}", action=argparse.BooleanOptionalAction, default=True, help=help_text
        )
    faults = parser.add_argument_group("fault injection (on /v1 only)")
    faults.add_argument(
        "--rate-limit-per-second", type=float, help="answer 429 above this many requests/second"
    )
    faults.add_argument("--retry-after", type=float, help="send Retry-After (seconds) with 429/503")
    faults.add_argument(
        "--retry-after-http-date", action="store_true", help="send Retry-After as an HTTP-date"
    )
    faults.add_argument("--max-parallel", type=int, help="answer 503 above this many requests in flight")
    faults.add_argument(
        "--error-rate-before", type=float, default=0.0, help="chance of a 5xx before applying"
    )
    faults.add_argument(
        "--error-rate-after", type=float, default=0.0, help="chance of a 5xx after a write applied"
    )
    faults.add_argument(
        "--drop-rate-after", type=float, default=0.0, help="chance of no answer after a write applied"
    )
    faults.add_argument("--latency-seconds", type=float, default=0.0, help="added to every request")
    faults.add_argument(
        "--latency-jitter-seconds", type=float, default=0.0, help="random extra latency, at most"
    )
    faults.add_argument("--seed", type=int, help="seed of the random fault decisions")
    return parser


def server_from_arguments(arguments: argparse.Namespace) -> SandboxServer:
    """A `SandboxServer` configured as the command line asks."""
    faults = Faults(
        rate_limit_per_second=arguments.rate_limit_per_second,
        retry_after=arguments.retry_after,
        retry_after_http_date=arguments.retry_after_http_date,
        max_parallel=arguments.max_parallel,
        error_rate_before=arguments.error_rate_before,
        error_rate_after=arguments.error_rate_after,
        drop_rate_after=arguments.drop_rate_after,
        latency_seconds=arguments.latency_seconds,
        latency_jitter_seconds=arguments.latency_jitter_seconds,
        seed=arguments.seed,
    )
    strictness = Strictness(
        check_country_code=arguments.check_country_code,
        check_lead_before_trial=arguments.check_lead_before_trial,
        check_future_timestamps=arguments.check_future_timestamps,
        require_customer_name=arguments.require_customer_name,
    )
    return SandboxServer(
        port=arguments.port,
        api_key=arguments.api_key,
        faults=faults,
        state_file=arguments.state_file,
        merge_delay_seconds=arguments.merge_delay_seconds,
        json_import_delay_seconds=arguments.json_import_delay_seconds,
        strictness=strictness,
        invoice_batch_mode=arguments.invoice_batch_mode,
        host=arguments.host,
        auto_merge=arguments.auto_merge,
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow sandbox") -> int:
    """Run the sandbox until SIGINT/SIGTERM; 0 on a clean stop, 2 on bad options."""
    parser = build_parser(prog)
    arguments = parser.parse_args(argv)
    try:
        server = server_from_arguments(arguments)
    except ValueError as error:
        parser.error(str(error))
    # uvicorn re-raises the stop signal after its graceful shutdown; by then there is nothing left to
    # interrupt, so the signal must not turn into a traceback or a "killed by SIGTERM" status.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: None)

    def announce(url: str) -> None:
        print(READY_LINE.format(url=url), flush=True)

    server.serve_forever(on_ready=announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
