"""The admin metrics API (Admin and SuperAdmin only).

======  ======================  ===================================================
GET     /api/metrics/dashboard  every section below at once over the last ``window``
                                (default 1h), with health and active alerts
                                (:mod:`.overview`)
GET     /api/metrics/system     this process: uptime, memory and GC, threads, file
                                descriptors, CPU, Python version, pid (:mod:`.system`)
GET     /api/metrics/series     one metric as a time series for charts (:mod:`.series`):
                                ``name`` (required), ``agg`` (default avg), ``step``,
                                ``start``, ``end`` (:mod:`.timewindow`), ``dims``,
                                ``instance`` (one instance's values; every
                                instance's, merged, by default)
GET     /api/metrics/performance
                                requests per minute, response times, errors, Apdex,
                                personality generation and database queries over
                                ``start`` .. ``end`` (:mod:`.performance`)
GET     /api/metrics/security   rate-limit violations, threats, authentication events,
                                API key use and the top offending IPs over ``start``
                                .. ``end``, counted from telemetry (:mod:`.security`)
GET     /api/metrics/business   active users, personality profiles created / updated /
                                queried and conversations started over ``start`` ..
                                ``end``, counted from telemetry (:mod:`.business`)
======  ======================  ===================================================

``/api/metrics/series`` answers::

    {"name": "http.server.duration", "agg": "p95", "step": 60.0,
     "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T01:00:00+00:00",
     "dims": {"route": "GET /api/personality"}, "instance": null, "source": "store",
     "points": [{"t": "2026-01-01T00:00:00+00:00", "value": 12.5}, ...]}

Errors use the host's shape: 401 without valid credentials, 403 for other roles,
422 ``validation_error`` whose message names the parameter (``step: 1s gives
3600 points, more than the maximum (1000)``), also for a parameter the route
does not know or one given twice; 503 when the store cannot answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from digitalme.monitoring.access import (
    AdminHandler,
    Caller,
    IdentifyCaller,
    admin_route,
    error_response,
)
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.errors import InvalidParameter
from digitalme.monitoring.dashboard.overview import Overview, WindowReader
from digitalme.monitoring.dashboard.series import (
    SeriesReader,
    parse_aggregation,
    parse_dims,
    parse_step,
)
from digitalme.monitoring.dashboard.system import ProcessStats
from digitalme.monitoring.dashboard.timewindow import TimeWindow, parse_window, time_window
from digitalme.monitoring.storage.errors import QueryError
from digitalme.settings import DashboardSettings

__all__ = ["MetricsReaders", "metrics_errors", "metrics_routes"]

MAX_NAME = 200
SERIES_PARAMETERS = frozenset({"name", "agg", "step", "start", "end", "dims", "instance"})
WINDOW_PARAMETERS = frozenset({"start", "end"})
DASHBOARD_PARAMETERS = frozenset({"window"})


@dataclass(frozen=True, slots=True)
class MetricsReaders:
    """What the metrics routes read from (built once by the facade)."""

    series: SeriesReader
    stats: ProcessStats
    performance: WindowReader
    security: WindowReader
    business: WindowReader
    overview: Overview


def metrics_errors(request: Request, exc: Exception) -> Response | None:
    """The metrics API's typed errors as the shared JSON errors (None: not one of them)."""
    if isinstance(exc, InvalidParameter | QueryError):
        return error_response(request, 422, "validation_error", str(exc))
    return None


def _parameters(request: Request, known: frozenset[str]) -> dict[str, str]:
    """The query parameters, each known and given once."""
    params = request.query_params
    for key in params:
        if key not in known:
            raise InvalidParameter(key, "unknown parameter")
        if len(params.getlist(key)) > 1:
            raise InvalidParameter(key, "given more than once")
    return dict(params)


def metrics_routes(
    readers: MetricsReaders,
    *,
    clock: Clock,
    settings: DashboardSettings,
    identify: IdentifyCaller,
    strict: bool = False,
) -> list[BaseRoute]:
    """The admin metrics routes."""

    def route(path: str, handler: AdminHandler) -> BaseRoute:
        return admin_route(
            path,
            ["GET"],
            handler,
            identify,
            strict=strict,
            answer=metrics_errors,
            component="metrics",
        )

    async def system(request: Request, caller: Caller) -> Response:
        _parameters(request, frozenset())
        return JSONResponse(readers.stats.read())

    async def series(request: Request, caller: Caller) -> Response:
        params = _parameters(request, SERIES_PARAMETERS)
        name = params.get("name", "").strip()
        if not name:
            raise InvalidParameter("name", "required")
        if len(name) > MAX_NAME:
            raise InvalidParameter("name", f"longer than {MAX_NAME} characters")
        aggregation = parse_aggregation(params.get("agg"))
        window = time_window(
            params.get("start"), params.get("end"), clock, max_window=settings.max_window
        )
        step = parse_step(
            params.get("step"),
            window,
            resolution=readers.series.resolution,
            max_points=settings.max_points,
        )
        dims = parse_dims(params.get("dims"))
        instance = params.get("instance", "").strip() or None
        if instance is not None and len(instance) > MAX_NAME:
            raise InvalidParameter("instance", f"longer than {MAX_NAME} characters")
        found = await readers.series.series(name, aggregation, step, window, dims, instance)
        return JSONResponse(found.to_dict())

    def over_window(reader: WindowReader) -> AdminHandler:
        async def handler(request: Request, caller: Caller) -> Response:
            params = _parameters(request, WINDOW_PARAMETERS)
            window = time_window(
                params.get("start"), params.get("end"), clock, max_window=settings.max_window
            )
            return JSONResponse(await reader.read(window))

        return handler

    async def dashboard(request: Request, caller: Caller) -> Response:
        params = _parameters(request, DASHBOARD_PARAMETERS)
        seconds = parse_window(params.get("window"), max_window=settings.max_window)
        end = clock.time()
        return JSONResponse(await readers.overview.read(TimeWindow(end - seconds, end)))

    return [
        route("/api/metrics/dashboard", dashboard),
        route("/api/metrics/system", system),
        route("/api/metrics/series", series),
        route("/api/metrics/performance", over_window(readers.performance)),
        route("/api/metrics/security", over_window(readers.security)),
        route("/api/metrics/business", over_window(readers.business)),
    ]
