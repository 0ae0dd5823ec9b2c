"""FastAPI dependencies: the current principal and role guards."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from digitalme.host.auth.service import Principal, RequestCredentials
from digitalme.host.errors import Forbidden
from digitalme.host.state import Services, Session, client_ip_of
from digitalme.monitoring.telemetry.context import annotate_request


def read_credentials(request: Request) -> RequestCredentials:
    bearer = None
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        bearer = value.strip() if scheme.lower() == "bearer" else ""
    return RequestCredentials(
        bearer=bearer,
        api_key=request.headers.get("x-api-key"),
        client_ip=client_ip_of(request),
        path=request.url.path,
    )


async def current_principal(request: Request, services: Services, session: Session) -> Principal:
    """The authenticated caller; 401 (and a security event) otherwise."""
    principal = await services.auth.authenticate(session, read_credentials(request))
    request.state.principal = principal
    annotate_request(user_id=principal.user_id, user_role=str(principal.role))
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(
    request: Request, services: Services, principal: CurrentPrincipal
) -> Principal:
    """The caller if Admin or SuperAdmin; 403 (and a security event) otherwise."""
    if not principal.is_admin:
        services.auth.forbidden(principal, client_ip_of(request), request.url.path, "admin only")
        raise Forbidden("this route needs the Admin or SuperAdmin role")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
