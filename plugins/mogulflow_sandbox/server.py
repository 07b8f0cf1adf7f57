"""`SandboxServer`: one sandbox on 127.0.0.1, in a background thread (tests) or the main thread (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvicorn

from mogulflow_sandbox.app import build_app
from mogulflow_sandbox.faults import FaultInjector, Faults
from mogulflow_sandbox.persistence import StateFileWriter, load_state_file
from mogulflow_sandbox.request_log import LoggedRequest, RequestLog
from mogulflow_sandbox.settings import (
    DEFAULT_JSON_IMPORT_DELAY_SECONDS,
    DEFAULT_MERGE_DELAY_SECONDS,
    InvoiceBatchMode,
    SandboxSettings,
    Strictness,
)
from mogulflow_sandbox.state import SandboxState

DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 10.0


class SandboxServer:
    """A running sandbox: ``with SandboxServer() as sandbox: ... sandbox.url ...``.

    ``port=0`` picks a free port; ``.url`` is ``http://127.0.0.1:PORT`` (no ``/v1``). ``.state`` is
    the live `SandboxState`, ``.requests`` the request log, ``set_faults`` switches faults at once.
    """

    def __init__(
        self,
        port: int = 0,
        api_key: str | None = None,
        faults: Faults | None = None,
        state_file: str | Path | None = None,
        merge_delay_seconds: float = DEFAULT_MERGE_DELAY_SECONDS,
        json_import_delay_seconds: float = DEFAULT_JSON_IMPORT_DELAY_SECONDS,
        strictness: Strictness | None = None,
        invoice_batch_mode: InvoiceBatchMode = "all_or_nothing",
        host: str = DEFAULT_HOST,
        auto_merge: bool = False,
    ) -> None:
        settings = SandboxSettings(
            strictness=strictness or Strictness(),
            invoice_batch_mode=invoice_batch_mode,
            merge_delay_seconds=merge_delay_seconds,
            json_import_delay_seconds=json_import_delay_seconds,
            auto_merge=auto_merge,
        )
        self.state = SandboxState(settings)
        self.request_log = RequestLog()
        self._injector = FaultInjector(faults)
        self._api_key = api_key
        self._host = host
        self._requested_port = port
        self._state_file = Path(state_file) if state_file is not None else None
        self._writer: StateFileWriter | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind, load the state file, serve in a background thread; returns once requests are answered."""
        self._prepare()
        assert self._server is not None and self._socket is not None
        server, sock = self._server, self._socket
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not server.started:
            self.stop()
            raise RuntimeError("the sandbox did not start")
        return self

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM, then save the state file.

        ``on_ready(url)`` is called once the port is bound (connections queue from then on).
        """
        self._prepare()
        assert self._server is not None and self._socket is not None
        if on_ready is not None:
            on_ready(self.url)
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._finish()

    def stop(self) -> None:
        """Stop serving, wait for the thread, write the state file one last time."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_SECONDS)
            self._thread = None
        self._finish()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare(self) -> None:
        if self._state_file is not None:
            load_state_file(self._state_file, self.state)
            self._writer = StateFileWriter(self._state_file, self.state)
            self._writer.start()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self._host, self._requested_port))
        self._socket.listen(128)
        app = build_app(self.state, self._injector, self.request_log, self._api_key)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # the gateway drops connections through this protocol's transport
            http="httptools",
        )
        self._server = uvicorn.Server(config)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # -- what tests use ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._socket is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without ``/v1``."""
        return f"http://{self._host}:{self.port}"

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._injector.faults

    def set_faults(self, faults: Faults) -> None:
        """Switch faults for the following requests (re-seeds the random decisions)."""
        self._injector.set_faults(faults)

    @property
    def requests(self) -> list[LoggedRequest]:
        """The ``/v1`` requests seen so far, oldest first."""
        return self.request_log.entries()

    def fault_counts(self) -> dict[str, int]:
        """How often each fault fired."""
        return self.request_log.fault_counts()

    def reset(self) -> None:
        """Forget the state and the request log."""
        self.state.reset()
        self.request_log.clear()
