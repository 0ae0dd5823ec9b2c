"""The telemetry-store check on SQLite and PostgreSQL: a write that leaves nothing behind."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest_servers import BACKENDS, backend_url
from digitalme.monitoring.health import HealthStatus
from digitalme.monitoring.health.checks import TelemetryStoreCheck
from digitalme.monitoring.health.registry import HealthRegistry
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.storage import TelemetryStore, schema
from digitalme.monitoring.testing import FakeClock
from polling import eventually


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, str(tmp_path / "telemetry.db"))


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[TelemetryStore]:
    store = await TelemetryStore.open(store_url, clock=clock)
    try:
        yield store
    finally:
        await store.close()


async def test_a_migrated_store_is_writable_and_left_unchanged(
    store: TelemetryStore, clock: FakeClock
) -> None:
    result = await TelemetryStoreCheck(store, clock=clock).check()
    assert result.status is HealthStatus.HEALTHY
    assert result.data == {"backend": store.backend}
    async with store.engine.connect() as connection:
        rows = await connection.scalar(select(func.count()).select_from(schema.events))
    assert rows == 0


async def test_a_store_without_its_tables_is_degraded(
    store_url: str, clock: FakeClock, registry: HealthRegistry, runner: HealthRunner
) -> None:
    store = TelemetryStore(store_url, clock=clock)  # not migrated
    registry.add(
        TelemetryStoreCheck(store, clock=clock), failure_status=HealthStatus.DEGRADED, timeout=5
    )
    try:
        result = (await runner.report()).entries[0].result
    finally:
        await store.close()
    assert result.status is HealthStatus.DEGRADED
    assert result.description == "telemetry store unreachable or not writable"
    assert result.error is not None


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_locked_sqlite_store_times_out_without_cutting_the_statement(
    store: TelemetryStore, clock: FakeClock, registry: HealthRegistry, runner: HealthRunner
) -> None:
    check = TelemetryStoreCheck(store, clock=clock)
    registry.add(check, failure_status=HealthStatus.DEGRADED, timeout=0.3)
    database = store.engine.url.database
    assert database is not None
    # to_thread may run each call on another worker thread
    locker = await asyncio.to_thread(
        sqlite3.connect, database, isolation_level=None, check_same_thread=False
    )
    try:
        await asyncio.to_thread(locker.execute, "BEGIN IMMEDIATE")  # another writer holds the lock
        locked = (await runner.report()).entries[0].result
        assert (locked.status, locked.description) == (
            HealthStatus.DEGRADED,
            "timed out after 0.3 s",
        )
    finally:
        await asyncio.to_thread(locker.execute, "ROLLBACK")
        await asyncio.to_thread(locker.close)
    # The statement that waited for the lock was left to finish, so the store still works.
    await eventually(
        lambda: healthy(runner), timeout=10, what="the store check healthy again after the lock"
    )
    await check.aclose()


async def healthy(runner: HealthRunner) -> bool:
    report = await runner.report(max_age=0)
    return report.status is HealthStatus.HEALTHY
