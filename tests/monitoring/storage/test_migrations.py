"""The store's migrations: they apply, are idempotent, match the schema, share a database."""

from __future__ import annotations

import asyncio
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from digitalme.host.migrate import upgrade_async as upgrade_host
from digitalme.monitoring.storage import upgrade, upgrade_async
from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.storage.schema import metadata

TABLES = {
    "telemetry_requests",
    "telemetry_dependencies",
    "telemetry_exceptions",
    "telemetry_events",
    "telemetry_security_events",
    "telemetry_metric_series",
    "telemetry_metric_buckets",
    "telemetry_rollups",
    "telemetry_active_users",
    "telemetry_alerts",
    "telemetry_alert_events",
    "telemetry_silences",
    "telemetry_alert_rules",
    "telemetry_deliveries",
    "telemetry_delivery_attempts",
    "telemetry_uptime_components",
    "telemetry_uptime_heartbeats",
    "telemetry_uptime_buckets",
    "telemetry_uptime_incidents",
    "telemetry_maintenance_windows",
    "telemetry_deployments",
    "telemetry_leases",
    "telemetry_alert_commands",
    "telemetry_hub_messages",
    "telemetry_minute_peaks",
    "telemetry_security_hours",
    "telemetry_item_rollups",
    "telemetry_active_user_periods",
    "telemetry_alembic_version",
}
HEAD = "0007"


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={"include_name": lambda name, kind, _p: kind != "table" or name in metadata.tables},
    )
    return list(compare_metadata(context, metadata))


async def _inspect(url: str) -> tuple[set[str], str, list[object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            version = (
                await connection.execute(text("SELECT version_num FROM telemetry_alembic_version"))
            ).scalar_one()
            diff = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    return tables, version, diff


async def test_migrations_create_every_table_and_match_the_schema(store_url: str) -> None:
    await upgrade_async(store_url)
    await upgrade_async(store_url)  # idempotent

    tables, version, diff = await _inspect(store_url)

    assert tables >= TABLES
    assert version == HEAD
    assert diff == []


async def test_sync_upgrade_works_outside_the_event_loop(store_url: str) -> None:
    await asyncio.to_thread(upgrade, store_url)

    tables, _, _ = await _inspect(store_url)

    assert tables >= TABLES


async def test_store_and_host_share_one_database_with_separate_version_tables(
    store_url: str,
) -> None:
    await upgrade_host(store_url)
    await upgrade_async(store_url)
    await upgrade_host(store_url)  # the host's migrations do not see the store's revision

    tables, version, _ = await _inspect(store_url)

    assert {"users", "alembic_version"} <= tables
    assert version == HEAD


@pytest.mark.postgres
async def test_instances_starting_together_migrate_once(postgres_url: str) -> None:
    """Three replicas' upgrades at once on PostgreSQL (each on its own connection): one
    migrates, the others wait for its advisory lock and find nothing to do. (On SQLite,
    ``serve`` migrates once before it starts its worker processes.)"""
    script = (
        "import sys\n"
        "from digitalme.host.migrate import upgrade as host\n"
        "from digitalme.monitoring.storage import upgrade as store\n"
        "store(sys.argv[1]); host(sys.argv[1])\n"
    )  # processes: Alembic keeps its context in module globals, so not threads
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, postgres_url)
        for _ in range(3)
    ]
    assert [await process.wait() for process in processes] == [0, 0, 0]

    tables, version, diff = await _inspect(postgres_url)

    assert tables >= TABLES
    assert version == HEAD
    assert diff == []
