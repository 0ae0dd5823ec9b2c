"""Typed errors of the telemetry store and its query layer.

Meaning lives in fields, never in message strings, and messages never carry the
store URL (it may hold a password) nor the values being written.
"""

from __future__ import annotations

from digitalme.monitoring.errors import MonitoringError


class StorageError(MonitoringError):
    """Root of the telemetry storage errors."""


class UnsupportedDatabase(StorageError):
    """The URL names a database the store does not support (only SQLite and PostgreSQL)."""

    def __init__(self, backend: str, reason: str | None = None) -> None:
        self.backend = backend
        self.reason = reason or f"supports sqlite and postgresql, not {backend!r}"
        super().__init__(f"telemetry store {self.reason}")


class StoreWriteError(StorageError):
    """A batch could not be written.

    ``permanent`` is True when retrying the same batch cannot succeed (the data
    itself is refused); False when the database is down, slow or busy.
    """

    def __init__(self, cause: BaseException, *, permanent: bool) -> None:
        self.permanent = permanent
        self.cause_type = type(cause).__name__
        kind = "refused the batch" if permanent else "is unavailable"
        super().__init__(f"telemetry store {kind} ({self.cause_type})")


class QueryError(StorageError):
    """A query argument is invalid; ``field`` names the argument, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
