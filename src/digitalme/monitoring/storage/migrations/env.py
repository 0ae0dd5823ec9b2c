"""Alembic environment for the telemetry store; the URL comes from the caller's config.

The store keeps its own version table and only ever looks at ``telemetry_*``
tables, so it can share a PostgreSQL database with the host's migrations.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.storage.schema import metadata

VERSION_TABLE = "telemetry_alembic_version"
target_metadata = metadata


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or (name or "").startswith("telemetry_")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by the caller"
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async(url))


run_migrations_online()
