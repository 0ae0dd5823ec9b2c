"""Alembic environment for the telemetry store; the URL comes from the caller's config.

The store keeps its own version table and only ever looks at ``telemetry_*``
tables, so it can share a PostgreSQL database with the host's migrations.
"""

from __future__ import annotations

from digitalme.migrations import run_environment
from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.storage.schema import metadata

VERSION_TABLE = "telemetry_alembic_version"


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or (name or "").startswith("telemetry_")


run_environment(metadata, create_engine, _include_name, VERSION_TABLE)
