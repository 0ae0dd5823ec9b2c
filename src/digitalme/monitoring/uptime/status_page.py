"""The public status page's routes: ``GET /status`` (HTML), its stylesheet,
``GET /api/status`` (JSON) and ``GET /api/status/badge.svg`` (the 30-day uptime of
``overall``), with no sign-in. What they show is :mod:`.status`'s public document,
computed at most once per ``cache_seconds``; :mod:`.status_render` draws it. When
the store fails they answer 503 (``status_unavailable``), logged once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from digitalme.monitoring.access import error_response
from digitalme.monitoring.named_route import NamedRoute
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.uptime.recorder import STORE_ERRORS
from digitalme.monitoring.uptime.service import UptimeMonitor
from digitalme.monitoring.uptime.status import StatusBuilder, StatusCache, StatusView
from digitalme.monitoring.uptime.status_render import (
    STYLE_PATH,
    render_badge,
    render_page,
    unavailable_page,
)
from digitalme.settings import StatusPageSettings

__all__ = ["API_PATH", "BADGE_PATH", "CONTENT_SECURITY_POLICY", "PAGE_PATH", "status_routes"]

PAGE_PATH = "/status"
API_PATH = "/api/status"
BADGE_PATH = "/api/status/badge.svg"
STYLE_FILE = Path(__file__).with_name("static") / "status.css"


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


# -- routes -------------------------------------------------------------------------------


def status_routes(
    monitor: UptimeMonitor, settings: StatusPageSettings, *, strict: bool = False
) -> list[BaseRoute]:
    """``/status``, its stylesheet, ``/api/status`` and ``/api/status/badge.svg``, public.

    A store failure is a 503; any other error too, unless ``strict`` (tests), where it
    is raised.
    """
    cache = StatusCache(
        StatusBuilder(monitor, settings).build, monitor.clock, settings.cache_seconds
    )
    outages = Outages(
        "digitalme.monitoring.uptime",
        failed="status_page_failed",
        recovered="status_page_recovered",
    )
    max_age = {"Cache-Control": f"max-age={int(settings.cache_seconds)}"}
    style = STYLE_FILE.read_bytes()
    style_etag = '"' + hashlib.sha256(style).hexdigest()[:32] + '"'

    async def current() -> StatusView | None:
        try:
            view = await cache.get()
        except Exception as exc:
            if strict and not isinstance(exc, STORE_ERRORS):
                raise
            outages.failed("status", type(exc).__name__)
            return None
        outages.recovered("status")
        return view

    def unavailable(request: Request) -> Response:
        return error_response(
            request,
            503,
            "status_unavailable",
            "the status is unavailable right now; try again shortly",
            headers={"Cache-Control": "no-store"},
        )

    async def api(request: Request) -> Response:
        view = await current()
        if view is None:
            return unavailable(request)
        return JSONResponse(view.to_dict(), headers=max_age)

    async def badge(request: Request) -> Response:
        view = await current()
        if view is None:
            return unavailable(request)
        headers = {**max_age, "Content-Security-Policy": "default-src 'none'"}
        headers["X-Content-Type-Options"] = "nosniff"
        return Response(
            render_badge(view.badge_percent), media_type="image/svg+xml", headers=headers
        )

    async def page(_: Request) -> Response:
        view = await current()
        if view is None:
            return Response(
                unavailable_page(settings.title),
                status_code=503,
                media_type="text/html; charset=utf-8",
                headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"},
            )
        return Response(
            render_page(view),
            media_type="text/html; charset=utf-8",
            headers={**_SECURITY_HEADERS, **max_age},
        )

    async def stylesheet(request: Request) -> Response:
        headers = {
            "ETag": style_etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == style_etag:
            return Response(status_code=304, headers=headers)
        return Response(style, media_type="text/css; charset=utf-8", headers=headers)

    return [
        NamedRoute(PAGE_PATH, page, methods=["GET"], include_in_schema=False),
        NamedRoute(STYLE_PATH, stylesheet, methods=["GET"], include_in_schema=False),
        NamedRoute(API_PATH, api, methods=["GET"], include_in_schema=False),
        NamedRoute(BADGE_PATH, badge, methods=["GET"], include_in_schema=False),
    ]
