"""Fixtures for the uptime tests: the uptime tables of the migrated store (``store``)."""

from __future__ import annotations

import pytest

from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.uptime.store import UptimeStore


@pytest.fixture
def uptime_store(store: TelemetryStore) -> UptimeStore:
    return UptimeStore(store.engine)
