"""``GET /api/cluster`` (admins): this instance, who leads, and who else writes telemetry.

::

    {"instance": id, "leading": bool,
     "lease": {"name", "seconds", "holder", "token", "expires_at"} | null,
     "instances": [{"instance", "last_bucket_at", "this": bool}],  # the last 5 minutes
     "backplane": {"status", "since", "connected", ...} | null}

``instances`` are those whose metric buckets reached the store in the last
:data:`SEEN_WINDOW` seconds (every instance that serves traffic or records
system metrics writes some every flush).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from digitalme.monitoring.access import Caller, IdentifyCaller, admin_route
from digitalme.monitoring.alerts.api import alert_errors
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.cluster.node import AlertNode
from digitalme.monitoring.dashboard.backplane import Backplane
from digitalme.monitoring.storage import schema

__all__ = ["SEEN_WINDOW", "cluster_routes", "seen_instances"]

SEEN_WINDOW = 300.0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def seen_instances(engine: AsyncEngine, since: float) -> dict[str, float]:
    """``{instance: start of its newest 10 s bucket}`` over buckets starting at ``since``."""
    table = schema.metric_buckets
    query = (
        select(table.c.instance, func.max(table.c.start))
        .where(table.c.resolution == 10, table.c.start >= since)
        .group_by(table.c.instance)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {str(instance): float(newest) for instance, newest in rows}


def cluster_routes(
    *,
    instance: str,
    engine: AsyncEngine,
    clock: Clock,
    node: AlertNode | None,
    backplane: Backplane | None,
    identify: IdentifyCaller,
    strict: bool = False,
) -> list[BaseRoute]:
    async def status(request: Request, caller: Caller) -> Response:
        seen = await seen_instances(engine, clock.time() - SEEN_WINDOW)
        lease: dict[str, Any] | None = None
        if node is not None:
            state = node.lease.state
            lease = {
                "name": node.lease.name,
                "seconds": node.lease.ttl,
                "holder": None if state is None else state.holder,
                "token": None if state is None else state.token,
                "expires_at": None if state is None else _iso(state.expires_at),
            }
        body = {
            "instance": instance,
            "leading": node is not None and node.leading,
            "lease": lease,
            "instances": [
                {"instance": name, "last_bucket_at": _iso(newest), "this": name == instance}
                for name, newest in sorted(seen.items())
            ],
            "backplane": None if backplane is None else backplane.state.to_dict(),
        }
        return JSONResponse(body)

    return [
        admin_route(
            "/api/cluster",
            ["GET"],
            status,
            identify,
            strict=strict,
            answer=alert_errors,
            component="cluster",
        )
    ]
