"""Times of the metrics API tests, relative to the fake clock's start."""

from __future__ import annotations

from datetime import UTC, datetime

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's start


def iso(seconds: float) -> str:
    """ISO 8601 of ``seconds`` after :data:`T0`."""
    return datetime.fromtimestamp(T0.timestamp() + seconds, UTC).isoformat()
