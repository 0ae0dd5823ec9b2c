"""Programmatic Alembic upgrades, shared by the host database and the telemetry store."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config
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
