"""The pure ASGI middleware that opens each request's context.

It is the outermost of the host's own middleware: it assigns the request id
(keeping a valid incoming ``X-Request-ID``), binds it to the log context, adds it
to the response, and turns an unhandled exception into a JSON 500 without
letting the stack trace reach the client.
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitalme.host.context import request_id_var
from digitalme.host.errors import send_error

_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

log = structlog.get_logger("digitalme.request")


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_ID.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Assigns the request id and guarantees a JSON error for unhandled exceptions."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception(
                    "unhandled_exception", method=scope.get("method"), path=scope.get("path")
                )
                if scope["type"] == "http" and not started:
                    await send_error(send_with_id, 500, "internal_error", "internal server error")
            finally:
                request_id_var.reset(token)
