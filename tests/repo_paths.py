"""Where things are in the repository, for tests (importable from any test folder)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
