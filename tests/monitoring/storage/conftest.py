"""Fixtures for the telemetry store tests: a migrated store on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
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


@pytest.fixture
def settle_sqlite_threads() -> Callable[[], Awaitable[None]]:
    """Wait for aiosqlite worker threads started during the test to end.

    When a connection cannot be opened, aiosqlite stops its worker thread without
    waiting for it; the thread then reports back to the event loop, which must
    still be open, so tests of unreachable SQLite stores wait here before ending.
    """
    before = set(threading.enumerate())

    async def settle() -> None:
        for thread in set(threading.enumerate()) - before:
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 10.0)

    return settle
