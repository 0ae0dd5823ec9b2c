"""Apply the telemetry store's Alembic migrations."""

from __future__ import annotations

from alembic.config import Config

from digitalme import migrations
from digitalme.monitoring.storage.engine import create_engine

SCRIPT_LOCATION = "digitalme.monitoring.storage:migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for the store at ``url`` (for the ``alembic`` API and tests)."""
    return migrations.alembic_config(url, SCRIPT_LOCATION)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the store at ``url`` to ``revision`` (blocking; call outside the event loop)."""
    migrations.upgrade(url, SCRIPT_LOCATION, revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Same as :func:`upgrade`, from inside a running event loop."""
    await migrations.upgrade_async(url, SCRIPT_LOCATION, create_engine, revision)
