"""A Slack incoming webhook on 127.0.0.1: records every message posted to it, answers `ok` as Slack does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WEBHOOK_PATH = "/services/T000/B000/XXXX"


@dataclass
class SlackDouble:
    """The webhook's URL and the messages it received (their JSON bodies), in order."""

    url: str
    messages: list[dict] = field(default_factory=list)

    def texts(self) -> list[str]:
        """The `text` of every message received."""
        return [str(m.get("text", "")) for m in self.messages]

    def connection_json(self) -> str:
        """An `AIRFLOW_CONN_*` value naming this webhook (a password with `://` is the full URL)."""
        return json.dumps({"conn_type": "slackwebhook", "password": self.url})


@contextmanager
def slack_webhook() -> Iterator[SlackDouble]:
    """Serve a Slack webhook double on a free loopback port until the block ends."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == WEBHOOK_PATH:
                received.append(json.loads(body or b"{}"))
                status, answer = 200, b"ok"
            else:
                status, answer = 404, b"no_service"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SlackDouble(f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}", received)
    finally:
        server.shutdown()
        server.server_close()
