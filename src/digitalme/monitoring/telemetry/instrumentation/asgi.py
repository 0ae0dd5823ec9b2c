"""Pure ASGI middleware: one request item per HTTP request, named by its route template.

It opens the request's :class:`TelemetryContext` (continuing an incoming W3C
``traceparent``), times the request, and on the way out records one item named
``METHOD /route/{template}`` (never the raw path, so cardinality stays bounded),
with the status, success (< 400) and the context. An unhandled exception is
recorded (type, message, stack) and re-raised for the error handler outside.
Nothing here awaits I/O.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.context import (
    TelemetryContext,
    context_from_traceparent,
    current_context,
)

UNMATCHED = "<unmatched>"


def route_name(scope: Scope) -> str:
    """``GET /api/personality/{profile_id}``; unmatched paths share one name."""
    route = scope.get("route")
    template = getattr(route, "path", None) if route is not None else None
    return f"{scope.get('method', 'GET')} {template or UNMATCHED}"


class TelemetryMiddleware:
    """Records every HTTP request; must sit inside the middleware that assigns request ids."""

    def __init__(self, app: ASGIApp, *, client: TelemetryClient, clock: Clock) -> None:
        self.app = app
        self.client = client
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = user_agent = None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"user-agent":
                user_agent = value.decode("latin-1")
        context = (
            TelemetryContext() if traceparent is None else context_from_traceparent(traceparent)
        )
        context.path = scope["path"]
        context.method = scope["method"]
        context.user_agent = user_agent
        state = scope.setdefault("state", {})
        context.request_id = state.get("request_id")
        token = current_context.set(context)
        status = 500
        started_at = self.clock.time()
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            status = 500
            if isinstance(exc, Exception):
                self.client.track_exception(exc, {"Handled": "false"})
            raise
        finally:
            duration = time.perf_counter() - started
            if context.client_ip is None:
                context.client_ip = state.get("client_ip")
            self.client.track_request(route_name(scope), started_at, duration, status, status < 400)
            current_context.reset(token)
