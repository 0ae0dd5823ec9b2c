"""Programmatic Alembic upgrades, shared by the host database and the telemetry store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(url: str, script_location: str) -> Config:
    """An Alembic config for ``script_location`` (``package:folder``) against ``url``."""
    config = Config()
    config.set_main_option("script_location", script_location)
    # ConfigParser interpolation would choke on '%' in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, script_location: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (blocking; call outside the event loop)."""
    command.upgrade(alembic_config(url, script_location), revision)


async def upgrade_async(
    url: str,
    script_location: str,
    create_engine: Callable[[str], AsyncEngine],
    revision: str = "head",
) -> None:
    """Same as :func:`upgrade`, from inside a running event loop, on an engine of ours."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_on, url, script_location, revision)
    finally:
        await engine.dispose()


def _upgrade_on(connection: Connection, url: str, script_location: str, revision: str) -> None:
    config = alembic_config(url, script_location)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def run_environment(
    target_metadata: MetaData,
    create_engine: Callable[[str], AsyncEngine],
    include_name: Callable[[str | None, str, object], bool],
    version_table: str = "alembic_version",
) -> None:
    """The body of an ``env.py``: migrate on the caller's connection, or on a new engine."""
    from alembic import context

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            include_name=include_name,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Several instances starting together: one migrates, the others wait for
                # it here and then find nothing left to do (the lock ends with the
                # transaction). SQLite serialises writers by itself.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                    {"name": version_table},
                )
            context.run_migrations()

    async def run_async(url: str) -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by the caller"
    asyncio.run(run_async(url))
