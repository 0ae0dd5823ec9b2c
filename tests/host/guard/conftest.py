"""Fixtures shared by the guard's tests: a real SecurityEvents with a recording listener."""

from __future__ import annotations

import pytest

from digitalme.host.security_events import SecurityEvent, SecurityEvents


@pytest.fixture
def events() -> SecurityEvents:
    return SecurityEvents()


@pytest.fixture
def recorded(events: SecurityEvents) -> list[SecurityEvent]:
    """Every event emitted on ``events``, in order."""
    seen: list[SecurityEvent] = []
    events.subscribe(seen.append)
    return seen
