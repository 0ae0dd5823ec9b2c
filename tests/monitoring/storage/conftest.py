"""Fixtures for the telemetry store tests (the store itself: tests/monitoring/conftest.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest


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
