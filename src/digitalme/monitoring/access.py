"""Who may call the monitoring layer's admin routes, and the error shape they answer with.

The monitoring layer never imports its host, so the host tells it who a request
comes from through an :data:`IdentifyCaller` callback: a :class:`Caller` that is
an admin (with a name for ``resolved_by`` and ``created_by``), a known caller
without the role (403), or nobody (401). Errors use the host's JSON shape,
``{"error": code, "message": text, "request_id": id}``, with the request id the
host's middleware put in the scope. :func:`admin_route` puts the two together
for every admin API of the layer (alerts, notifications, metrics).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digitalme.monitoring.named_route import NamedRoute

__all__ = [
    "Access",
    "AdminHandler",
    "Caller",
    "ErrorAnswer",
    "IdentifyCaller",
    "admin_route",
    "error_response",
    "from_authorize",
    "refusal",
]

log = structlog.get_logger("digitalme.monitoring.access")


class Access(StrEnum):
    ADMIN = "admin"
    FORBIDDEN = "forbidden"  # authenticated, without the Admin or SuperAdmin role
    ANONYMOUS = "anonymous"  # no credentials, or credentials that do not hold


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, as far as the admin routes care."""

    access: Access
    name: str | None = None

    @classmethod
    def admin(cls, name: str) -> Caller:
        return cls(Access.ADMIN, name)

    @classmethod
    def forbidden(cls, name: str | None = None) -> Caller:
        return cls(Access.FORBIDDEN, name)

    @classmethod
    def anonymous(cls) -> Caller:
        return cls(Access.ANONYMOUS)

    @property
    def is_admin(self) -> bool:
        return self.access is Access.ADMIN


IdentifyCaller = Callable[[Request], Awaitable[Caller]]
"""The host's callback: who ``request`` comes from."""


def from_authorize(authorize: Callable[[Request], Awaitable[bool]]) -> IdentifyCaller:
    """An :data:`IdentifyCaller` over a yes/no ``authorize`` (no 403: refused is 401)."""

    async def identify(request: Request) -> Caller:
        return Caller.admin("admin") if await authorize(request) else Caller.anonymous()

    return identify


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The host's error shape (plus ``extra`` fields)."""
    state = request.scope.get("state") or {}
    body: dict[str, Any] = {
        "error": code,
        "message": message,
        "request_id": str(state.get("request_id", "")),
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def refusal(request: Request, caller: Caller) -> JSONResponse | None:
    """401 or 403 unless ``caller`` is an admin."""
    if caller.access is Access.ANONYMOUS:
        return error_response(
            request,
            401,
            "unauthorized",
            "authentication required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if caller.access is Access.FORBIDDEN:
        return error_response(
            request, 403, "forbidden", "this route needs the Admin or SuperAdmin role"
        )
    return None


AdminHandler = Callable[[Request, Caller], Awaitable[Response]]
"""An admin route's handler: the request and who made it (always an admin)."""

ErrorAnswer = Callable[[Request, Exception], Response | None]
"""Turns a typed error of one API into its response; None for errors it does not know."""


def admin_route(
    path: str,
    methods: list[str],
    handler: AdminHandler,
    identify: IdentifyCaller,
    *,
    strict: bool,
    answer: ErrorAnswer,
    component: str,
) -> Route:
    """A route for admins only (401 / 403 otherwise).

    ``answer`` turns the API's typed errors into the shared JSON errors. Any other
    exception is a 503 naming ``component`` (monitoring never breaks the host),
    unless ``strict``, where it is raised so that tests fail loudly.
    """

    async def endpoint(request: Request) -> Response:
        caller = await identify(request)
        refused = refusal(request, caller)
        if refused is not None:
            return refused
        try:
            return await handler(request, caller)
        except Exception as exc:
            answered = answer(request, exc)
            if answered is not None:
                return answered
            if strict:
                raise
            log.exception("admin_api_failed", path=path, component=component)
            return error_response(
                request,
                503,
                "service_unavailable",
                f"{component} unavailable ({type(exc).__name__})",
            )

    return NamedRoute(path, endpoint, methods=methods, include_in_schema=False)
