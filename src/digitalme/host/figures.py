"""What only the host knows, registered for the admin metrics API (``HostFigures``)."""

from __future__ import annotations

from sqlalchemy import func, select

from digitalme.host.db import Database
from digitalme.host.models import ApiKey
from digitalme.monitoring.dashboard.figures import Figures, HostFigures

__all__ = ["register_host_figures"]


def register_host_figures(figures: HostFigures, database: Database) -> None:
    """``database.pool`` (the connection pool) and ``api_keys`` (keys not revoked)."""

    async def pool() -> Figures:
        engine_pool = database.engine.pool
        found: dict[str, int | float | None] = {}
        for name, method in (("in_use", "checkedout"), ("idle", "checkedin"), ("size", "size")):
            read = getattr(engine_pool, method, None)  # NullPool and StaticPool have none
            if callable(read):
                found[name] = read()
        overflow = getattr(engine_pool, "overflow", None)
        if callable(overflow):  # negative while fewer than `size` connections are open
            found["overflow"] = max(0, overflow())
        return found

    async def api_keys() -> Figures:
        async with database.sessions() as session:
            active = await session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
            )
        return {"active": active or 0}

    figures.register("database.pool", pool)
    figures.register("api_keys", api_keys)
