"""The admin uptime API (Admin and SuperAdmin only).

======  ===========================  ==============================================
GET     /api/uptime                  per component: last status, uptime over 1 h,
                                     24 h, 7 d, 30 d, 90 d and 365 d, and over
                                     ``window`` (default 24h); with ``component``
                                     also its buckets (uptime, average and P95
                                     response time per minute, hour or day); and
                                     the deployments in the window (markers)
GET     /api/uptime/incidents        incidents overlapping ``window`` (default 30d),
                                     newest first, with MTTR and (per component) MTBF
GET     /api/slo                     the SLO: error budget, consumed, remaining,
                                     current burn rate, each burn-rate tier
GET     /api/maintenance             maintenance windows (``active`` now or not)
POST    /api/maintenance             add one (``created_by`` is the caller)
GET     /api/maintenance/{id}
PUT     /api/maintenance/{id}        replace one
DELETE  /api/maintenance/{id}
GET     /api/deployments             deployment markers in ``window`` (default 7d)
POST    /api/deployments             record one (``deployed_by`` defaults to the caller,
                                     ``at`` to now)
DELETE  /api/deployments/{id}
======  ===========================  ==============================================

``source`` picks whose heartbeats: ``inside`` (default, the service's own
prober) or ``outside`` (``digitalme watch``). ``window`` is a duration
(``24h``, ``30d``, ``PT1H``) of at most 366 days. Errors: 401 / 403, 422
``validation_error`` naming the field or parameter, 404 ``not_found``, 503 when
the store cannot answer.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from digitalme.monitoring.access import AdminHandler, Caller, IdentifyCaller, error_response
from digitalme.monitoring.access import admin_route as shared_admin_route
from digitalme.monitoring.alerts.api import (
    ApiInput,
    InvalidInput,
    parse_input,
    parse_query,
    read_json,
)
from digitalme.monitoring.dashboard.errors import InvalidParameter
from digitalme.monitoring.dashboard.timewindow import parse_window
from digitalme.monitoring.durations import MAX_SECONDS
from digitalme.monitoring.telemetry.sketch import sketch_from_bytes
from digitalme.monitoring.uptime.deployments import Deployment
from digitalme.monitoring.uptime.maintenance import (
    COMPONENT_PATTERN,
    MaintenanceWindow,
    Recurrence,
)
from digitalme.monitoring.uptime.model import Incident, Source
from digitalme.monitoring.uptime.service import UptimeMonitor
from digitalme.monitoring.uptime.windows import DAY, HOUR, MINUTE, WindowFigures

__all__ = ["incident_dict", "uptime_routes"]

MAX_LIMIT = 1000


class NotFound(Exception):
    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"no {what} with id {key!r}")


def uptime_errors(request: Request, exc: Exception) -> Response | None:
    if isinstance(exc, InvalidInput | InvalidParameter):
        return error_response(request, 422, "validation_error", str(exc))
    if isinstance(exc, NotFound):
        return error_response(request, 404, "not_found", str(exc))
    return None


class UptimeQuery(ApiInput):
    window: str | None = Field(default=None, max_length=100)
    source: Source = Source.INSIDE
    component: str | None = Field(default=None, pattern=COMPONENT_PATTERN)


class IncidentQuery(UptimeQuery):
    source: Source | None = None  # type: ignore[assignment]
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)


class DeploymentQuery(ApiInput):
    window: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)


class MaintenanceInput(ApiInput):
    title: str = Field(min_length=1, max_length=200)
    components: list[str] = Field(default_factory=list, max_length=100)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    recurrence: Recurrence | None = None
    until: AwareDatetime | None = None


class DeploymentInput(ApiInput):
    version: str = Field(min_length=1, max_length=100)
    deployed_by: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    at: AwareDatetime | None = None


def incident_dict(incident: Incident, now: float) -> dict[str, Any]:
    return {
        "id": incident.id,
        "component": incident.component,
        "source": str(incident.source),
        "cause": incident.cause,
        "started_at": _iso(incident.started_at),
        "ended_at": None if incident.ended_at is None else _iso(incident.ended_at),
        "open": incident.open,
        "duration_seconds": round(incident.duration(now), 3),
        "failing": incident.failing,
        "description": incident.description,
    }


def uptime_routes(
    monitor: UptimeMonitor, identify: IdentifyCaller, *, strict: bool = False
) -> list[BaseRoute]:
    """The admin uptime, SLO, maintenance and deployment routes over ``monitor``."""
    store, reader, clock = monitor.store, monitor.reader, monitor.clock

    def route(path: str, methods: list[str], handler: AdminHandler) -> Route:
        return shared_admin_route(
            path,
            methods,
            handler,
            identify,
            strict=strict,
            answer=uptime_errors,
            component="uptime",
        )

    async def uptime(request: Request, caller: Caller) -> Response:
        params: UptimeQuery = parse_query(request, UptimeQuery)
        seconds = parse_window(params.window, max_window=MAX_SECONDS, default=DAY)
        components = None if params.component is None else [params.component]
        states = await store.load_states(params.source)
        standard = await reader.standard(params.source, components, states)
        window = await reader.figures(params.source, seconds, components=components, states=states)
        now = clock.now()
        out = []
        for component, state in sorted(states.items()):
            if components is not None and component not in components:
                continue
            entry: dict[str, Any] = {
                "component": component,
                "status": str(state.last_status),
                "last_heartbeat_at": _iso(state.last_at),
                "interval_seconds": state.interval,
                "in_maintenance": bool(monitor.calendar.active(now, component)),
                "open_incident": (
                    None if state.incident is None else incident_dict(state.incident, clock.time())
                ),
                "windows": {
                    name: figures.to_dict() for name, figures in standard.get(component, {}).items()
                },
                "window": window[component].to_dict() if component in window else None,
            }
            if params.component is not None:
                entry["buckets"] = await _buckets(monitor, params.source, component, seconds)
            out.append(entry)
        if params.component is not None and not out:
            raise NotFound("component", params.component)
        # the uptime timeline's markers: what was deployed in the window
        deployed = await store.deployments(clock.time() - seconds, clock.time() + 1.0, MAX_LIMIT)
        return JSONResponse(
            {
                "source": str(params.source),
                "window_seconds": seconds,
                "components": out,
                "deployments": [d.to_dict() for d in deployed],
            }
        )

    async def incidents(request: Request, caller: Caller) -> Response:
        params: IncidentQuery = parse_query(request, IncidentQuery)
        seconds = parse_window(params.window, max_window=MAX_SECONDS, default=30 * DAY)
        now = clock.time()
        found = await store.incidents(
            now - seconds,
            now,
            source=params.source,
            component=params.component,
            limit=params.limit,
        )
        ended = [i for i in found if i.ended_at is not None and i.ended_at >= now - seconds]
        mttr = sum(i.duration(now) for i in ended) / len(ended) if ended else None
        mtbf = None
        if params.component is not None and found:
            figures = await reader.figures(
                params.source or Source.INSIDE, seconds, components=[params.component]
            )
            got = figures.get(params.component)
            if got is not None:
                mtbf = (got.totals.up + got.totals.degraded) / len(found)
        return JSONResponse(
            {
                "window_seconds": seconds,
                "count": len(found),
                "mttr_seconds": None if mttr is None else round(mttr, 3),
                "mtbf_seconds": None if mtbf is None else round(mtbf, 3),
                "incidents": [incident_dict(i, now) for i in found],
            }
        )

    async def slo(request: Request, caller: Caller) -> Response:
        parse_query(request, ApiInput)
        report = await monitor.slo.report()
        return JSONResponse(report.to_dict())

    def maintenance_dict(window: MaintenanceWindow) -> dict[str, Any]:
        now = clock.now()
        upcoming = window.occurrences(now, now + timedelta(days=400))[:1]
        return {
            **window.model_dump(mode="json"),
            "active": bool(window.occurrences(now, now + timedelta(microseconds=1))),
            "next_occurrence": (
                None
                if not upcoming
                else {
                    "starts_at": upcoming[0][0].isoformat(),
                    "ends_at": upcoming[0][1].isoformat(),
                }
            ),
        }

    def maintenance_of(
        data: MaintenanceInput, caller: Caller, window_id: str | None
    ) -> MaintenanceWindow:
        values = {
            **data.model_dump(),
            "created_by": caller.name or "admin",
            "created_at": clock.now(),
        }
        if window_id is not None:
            values["id"] = window_id
        window: MaintenanceWindow = parse_input(MaintenanceWindow, values)
        return window

    async def list_maintenance(request: Request, caller: Caller) -> Response:
        parse_query(request, ApiInput)
        await monitor.refresh_calendar()
        return JSONResponse(
            {"maintenance": [maintenance_dict(w) for w in monitor.calendar.windows]}
        )

    async def create_maintenance(request: Request, caller: Caller) -> Response:
        data = parse_input(MaintenanceInput, await read_json(request))
        window = maintenance_of(data, caller, None)
        await monitor.save_maintenance(window)
        return JSONResponse({"maintenance": maintenance_dict(window)}, status_code=201)

    async def get_maintenance(request: Request, caller: Caller) -> Response:
        window_id = request.path_params["window_id"]
        await monitor.refresh_calendar()
        window = monitor.calendar.get(window_id)
        if window is None:
            raise NotFound("maintenance window", window_id)
        return JSONResponse({"maintenance": maintenance_dict(window)})

    async def replace_maintenance(request: Request, caller: Caller) -> Response:
        window_id = request.path_params["window_id"]
        data = parse_input(MaintenanceInput, await read_json(request))
        await monitor.refresh_calendar()
        if monitor.calendar.get(window_id) is None:
            raise NotFound("maintenance window", window_id)
        window = maintenance_of(data, caller, window_id)
        await monitor.save_maintenance(window)
        return JSONResponse({"maintenance": maintenance_dict(window)})

    async def delete_maintenance(request: Request, caller: Caller) -> Response:
        window_id = request.path_params["window_id"]
        if not await monitor.delete_maintenance(window_id):
            raise NotFound("maintenance window", window_id)
        return Response(status_code=204)

    async def list_deployments(request: Request, caller: Caller) -> Response:
        params: DeploymentQuery = parse_query(request, DeploymentQuery)
        seconds = parse_window(params.window, max_window=MAX_SECONDS, default=7 * DAY)
        now = clock.time()
        found = await store.deployments(now - seconds, now + 1.0, params.limit)
        return JSONResponse({"deployments": [d.to_dict() for d in found]})

    async def record_deployment(request: Request, caller: Caller) -> Response:
        data: DeploymentInput = parse_input(DeploymentInput, await read_json(request))
        deployment: Deployment = parse_input(
            Deployment,
            {
                "version": data.version,
                "deployed_by": data.deployed_by or caller.name or "admin",
                "description": data.description,
                "at": data.at or clock.now(),
            },
        )
        await store.add_deployment(deployment)
        return JSONResponse({"deployment": deployment.to_dict()}, status_code=201)

    async def delete_deployment(request: Request, caller: Caller) -> Response:
        deployment_id = request.path_params["deployment_id"]
        if not await store.delete_deployment(deployment_id):
            raise NotFound("deployment", deployment_id)
        return Response(status_code=204)

    return [
        route("/api/uptime", ["GET"], uptime),
        route("/api/uptime/incidents", ["GET"], incidents),
        route("/api/slo", ["GET"], slo),
        route("/api/maintenance", ["GET"], list_maintenance),
        route("/api/maintenance", ["POST"], create_maintenance),
        route("/api/maintenance/{window_id}", ["GET"], get_maintenance),
        route("/api/maintenance/{window_id}", ["PUT"], replace_maintenance),
        route("/api/maintenance/{window_id}", ["DELETE"], delete_maintenance),
        route("/api/deployments", ["GET"], list_deployments),
        route("/api/deployments", ["POST"], record_deployment),
        route("/api/deployments/{deployment_id}", ["DELETE"], delete_deployment),
    ]


def bucket_level(seconds: float) -> int:
    """Minute buckets up to 6 h, hours up to 8 days, days beyond."""
    return MINUTE if seconds <= 6 * HOUR else HOUR if seconds <= 8 * DAY else DAY


async def _buckets(
    monitor: UptimeMonitor, source: Source, component: str, seconds: float
) -> list[dict[str, Any]]:
    level = bucket_level(seconds)
    now = monitor.clock.time()
    first = math.floor((now - seconds) / level) * level
    rows = await monitor.store.buckets(
        source, component, [(level, float(first), now)], sketches=True
    )
    out = []
    for _, start, totals, sketch in rows:
        figures = WindowFigures(start, start + level, totals, monitor.reader.unknown_as_down)
        p95 = None
        if sketch is not None and totals.duration_count:
            value = sketch_from_bytes(sketch).get_quantile_value(0.95)
            p95 = None if value is None else round(min(float(value), totals.duration_max or 0.0), 3)
        body = figures.to_dict()
        body["response_ms"]["p95"] = p95
        out.append({"t": _iso(start), **body})
    return out


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()
