"""Errors that are mistakes, not outages: no retry can fix them, so a task fails at once."""

from __future__ import annotations


class SetupError(ValueError):
    """A mistake in the setup (a connection, a table or column, the SQL, a param) that no retry can
    fix. Its message says what is wrong and what to do, in one line."""


class RejectRatioExceeded(RuntimeError):
    """Too large a share of one entity's rows was rejected: refuse to load that entity."""
