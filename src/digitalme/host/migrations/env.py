"""Alembic environment for the host database; the URL comes from the caller's config."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from digitalme.host import models  # noqa: F401  (registers the tables on Base.metadata)
from digitalme.host.db import Base, create_engine

target_metadata = Base.metadata


def _host_tables_only(name: str | None, type_: str, _parent: object) -> bool:
    # The telemetry store may share the database; its tables are not ours to diff.
    return not (type_ == "table" and name is not None and name.startswith("telemetry_"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=_host_tables_only,
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
