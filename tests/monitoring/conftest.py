"""Fixtures of the monitoring layer's tests: a migrated telemetry store on SQLite and on
PostgreSQL (``store``, at ``store_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest_servers import BACKENDS, backend_url
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.testing import FakeClock


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, str(tmp_path / "var" / "telemetry.db"))


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[TelemetryStore]:
    store = await TelemetryStore.open(store_url, clock=clock)
    try:
        yield store
    finally:
        await store.close()
