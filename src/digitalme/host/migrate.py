"""Apply the host database's Alembic migrations."""

from __future__ import annotations

from alembic.config import Config

from digitalme import migrations
from digitalme.host.db import create_engine

SCRIPT_LOCATION = "digitalme.host:migrations"


def alembic_config(url: str) -> Config:
    return migrations.alembic_config(url, SCRIPT_LOCATION)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the host database at ``url`` to ``revision`` (blocking)."""
    migrations.upgrade(url, SCRIPT_LOCATION, revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Same as :func:`upgrade`, from inside a running event loop."""
    await migrations.upgrade_async(url, SCRIPT_LOCATION, create_engine, revision)
