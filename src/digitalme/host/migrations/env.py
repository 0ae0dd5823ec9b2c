"""Alembic environment for the host database; the URL comes from the caller's config."""

from __future__ import annotations

from digitalme.host import models  # noqa: F401  (registers the tables on Base.metadata)
from digitalme.host.db import Base, create_engine
from digitalme.migrations import run_environment


def _host_tables_only(name: str | None, type_: str, _parent: object) -> bool:
    # The telemetry store may share the database; its tables are not ours to diff.
    return not (type_ == "table" and name is not None and name.startswith("telemetry_"))


run_environment(Base.metadata, create_engine, _host_tables_only)
