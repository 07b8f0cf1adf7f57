"""The optional state file: load at start, write atomically after changes and at shutdown.

Writes are debounced (at most one per `SAVE_INTERVAL_SECONDS`) so a busy sandbox does not rewrite
the whole file per request; the final write at shutdown catches the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from mogulflow_sandbox.state import SandboxState

SAVE_INTERVAL_SECONDS = 0.5


def load_state_file(path: Path, state: SandboxState) -> bool:
    """Fill ``state`` from ``path`` if the file exists; True when it did."""
    if not path.exists():
        return False
    state.load_storage(json.loads(path.read_text(encoding="utf-8")))
    return True


def save_state_file(path: Path, state: SandboxState) -> int:
    """Write the state atomically (temporary file + rename); returns the state version written."""
    version, stored = state.versioned_storage()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(stored, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return version


class StateFileWriter:
    """A background thread that writes the state file whenever the state changed."""

    def __init__(self, path: Path, state: SandboxState) -> None:
        self.path = path
        self.state = state
        self._saved_version = state.version
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-state-file", daemon=True)

    def start(self) -> None:
        """Begin watching for changes."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and write one last time."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.save_if_changed()

    def save_if_changed(self) -> None:
        """Write the file if the state moved since the last write."""
        self.state.apply_due_work()
        if self.state.version != self._saved_version:
            self._saved_version = save_state_file(self.path, self.state)

    def _run(self) -> None:
        while not self._stop.wait(SAVE_INTERVAL_SECONDS):
            self.save_if_changed()
