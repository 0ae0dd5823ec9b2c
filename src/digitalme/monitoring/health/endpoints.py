"""The health endpoints: ``/health``, ``/health/ready`` and ``/health/live``.

Body of ``/health`` and ``/health/ready`` (the plan's response writer)::

    {"status": "Healthy", "totalDuration": 12.345, "timestamp": "2026-01-01T00:00:00+00:00",
     "results": [{"name": "database", "status": "Healthy", "duration": 3.21,
                  "description": "database reachable", "data": {...}, "exception": null}]}

Durations are milliseconds (a number, as the plan's ``TotalMilliseconds``);
``timestamp`` is when the answer was written (results may be up to the cache age
older). Healthy and Degraded answer 200, Unhealthy 503. ``data`` and ``exception``
are present only for callers that ``authorize`` accepts (admins), or for everyone
when ``show_details`` is set; anonymous callers get name, status, duration and
description. Every answer carries ``Cache-Control: no-store``: a cache in
between must not turn a fresh outage into a stale "Healthy".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.model import HealthReport, HealthStatus
from digitalme.monitoring.health.registry import EXTERNAL
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.named_route import NamedRoute

__all__ = [
    "HEALTH_PATH",
    "HEALTH_PATHS",
    "LIVE_PATH",
    "READY_PATH",
    "Authorize",
    "health_routes",
    "report_body",
]

HEALTH_PATH = "/health"
READY_PATH = "/health/ready"
LIVE_PATH = "/health/live"
HEALTH_PATHS = frozenset({HEALTH_PATH, READY_PATH, LIVE_PATH})
NO_STORE = {"Cache-Control": "no-store"}

Authorize = Callable[[Request], Awaitable[bool]]

log = structlog.get_logger("digitalme.monitoring.health")


def report_body(report: HealthReport, *, details: bool) -> dict[str, Any]:
    """The JSON body for ``report``; ``data`` and ``exception`` only with ``details``."""
    results = []
    for entry in report.entries:
        result = entry.result
        item: dict[str, Any] = {
            "name": entry.name,
            "status": str(result.status),
            "duration": _ms(result.duration),
            "description": result.description,
        }
        if details:
            item["data"] = dict(result.data)
            item["exception"] = result.error
        results.append(item)
    return {
        "status": str(report.status),
        "totalDuration": _ms(report.total_duration),
        "timestamp": report.timestamp.isoformat(),
        "results": results,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def health_routes(
    runner: HealthRunner, *, clock: Clock, authorize: Authorize, show_details: bool
) -> list[BaseRoute]:
    """The three routes; ``authorize`` tells whether a caller may see details."""

    async def details_allowed(request: Request) -> bool:
        if show_details:
            return True
        try:
            return await authorize(request)
        except Exception as exc:
            # The check of credentials may itself need a dependency that is down
            # (the database); the answer is then the anonymous one, not an error.
            # Only the type is logged: driver messages can quote connection details.
            log.warning("health_authorize_failed", error=type(exc).__name__)
            return False

    async def respond(request: Request, exclude_tags: frozenset[str]) -> Response:
        report = await runner.report(exclude_tags=exclude_tags)
        body = report_body(report, details=await details_allowed(request))
        status_code = 503 if report.status is HealthStatus.UNHEALTHY else 200
        return JSONResponse(body, status_code=status_code, headers=NO_STORE)

    async def health(request: Request) -> Response:
        return await respond(request, frozenset())

    async def ready(request: Request) -> Response:
        return await respond(request, frozenset({EXTERNAL}))

    async def live(_: Request) -> Response:
        # Touches nothing: it answers as long as the process serves requests.
        return JSONResponse(
            {"status": "UP", "timestamp": clock.now().isoformat()}, headers=NO_STORE
        )

    return [
        NamedRoute(HEALTH_PATH, health, methods=["GET"], include_in_schema=False),
        NamedRoute(READY_PATH, ready, methods=["GET"], include_in_schema=False),
        NamedRoute(LIVE_PATH, live, methods=["GET"], include_in_schema=False),
    ]
