"""The application factory: builds the DigitalMe host and its middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.types import Scope

from digitalme import __version__
from digitalme.host import conversations, diagnostics, personality
from digitalme.host.auth import routes as auth_routes
from digitalme.host.auth.deps import read_credentials
from digitalme.host.auth.service import AuthService
from digitalme.host.auth.tokens import TokenService, resolve_jwt_secret
from digitalme.host.db import Database
from digitalme.host.errors import ApiError, install_error_handlers
from digitalme.host.figures import register_host_figures
from digitalme.host.guard.middleware import SecurityGuardMiddleware
from digitalme.host.guard.rate_limit import RateLimiter
from digitalme.host.health import add_host_checks
from digitalme.host.llm import ConversationModel, build_conversation_model
from digitalme.host.models import User
from digitalme.host.request_id import RequestIdMiddleware
from digitalme.host.security_events import SecurityEvent, SecurityEvents
from digitalme.host.state import HostServices, client_ip_of
from digitalme.monitoring.access import Caller
from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.health import HEALTH_PATHS
from digitalme.monitoring.telemetry.instrumentation.asgi import TelemetryMiddleware
from digitalme.monitoring.telemetry.instrumentation.sql import instrument_engine
from digitalme.settings import Environment, Settings, load_settings


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    security_events: SecurityEvents | None = None,
    llm: ConversationModel | None = None,
    monitoring: Monitoring | None = None,
) -> FastAPI:
    """Build the service. Migrations are applied by the caller (``digitalme db upgrade``)."""
    clock = clock or SystemClock()
    events = security_events or SecurityEvents()
    if monitoring is None:
        monitoring = Monitoring.from_settings(settings, clock=clock, version=__version__)
    telemetry = monitoring.client

    def record_security_event(event: SecurityEvent) -> None:
        properties = dict(event.properties)
        if event.path is not None:
            properties["Path"] = event.path
        telemetry.track_security_event(
            str(event.type),
            event.details,
            event.user_id,
            client_ip=event.client_ip,
            properties=properties,
        )

    events.subscribe(record_security_event)
    tracking = settings.telemetry.enabled and settings.telemetry.enable_dependency_tracking
    database = Database(settings.database_url)
    register_host_figures(monitoring.host_figures, database)
    secret = resolve_jwt_secret(settings.auth, settings.server.data_dir)
    auth = AuthService(
        settings.auth, TokenService(settings.auth, secret, clock), events, clock, telemetry
    )
    model = llm
    if model is None:
        model = build_conversation_model(
            settings.claude, telemetry=telemetry if tracking else None, clock=clock
        )
    add_host_checks(monitoring.health, settings, database=database, model=model, clock=clock)
    rate_limiter = RateLimiter.from_settings(
        settings.security, settings.redis_url, health_per_ip=settings.health.rate_limit_per_ip
    )
    if tracking:
        instrument_engine(database.engine, telemetry, clock)
        rate_limiter.instrument(telemetry, clock)
    services = HostServices(
        settings=settings,
        database=database,
        security_events=events,
        clock=clock,
        auth=auth,
        llm=model,
        performance=monitoring.performance,
        telemetry=telemetry,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await rate_limiter.aclose()
            if model is not None:
                await model.aclose()
            await database.dispose()

    app = FastAPI(
        title="DigitalMe", version=__version__, lifespan=monitoring.wrap_lifespan(lifespan)
    )
    app.state.host = services
    app.state.monitoring = monitoring
    install_error_handlers(app)
    app.include_router(auth_routes.router)
    app.include_router(personality.router)
    app.include_router(conversations.router)
    if settings.environment is not Environment.PRODUCTION:
        app.include_router(diagnostics.router)

    async def authorize_admin(request: Request) -> bool:
        credentials = read_credentials(request)
        if credentials.bearer is None and credentials.api_key is None:
            return False
        async with database.sessions() as session:
            try:
                principal = await auth.authenticate(session, credentials)
            except ApiError:
                return False
        return principal.is_admin

    async def identify_admin(request: Request) -> Caller:
        """Who calls the monitoring admin API: 401 and 403 as on the host's own admin routes."""
        credentials = read_credentials(request)
        if credentials.bearer is None and credentials.api_key is None:
            return Caller.anonymous()
        async with database.sessions() as session:
            try:
                principal = await auth.authenticate(session, credentials)
            except ApiError:
                return Caller.anonymous()
            if not principal.is_admin:
                auth.forbidden(principal, client_ip_of(request), request.url.path, "admin only")
                return Caller.forbidden(f"user:{principal.user_id}")
            user = await session.get(User, principal.user_id)
        return Caller.admin(user.email if user is not None else f"user:{principal.user_id}")

    app.router.routes[:0] = monitoring.routes(
        authorize_admin, identify=identify_admin, sign_in_path="/api/auth/login"
    )

    def identify(scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token else None
        return auth.identify(bearer, headers.get("x-api-key"))

    # Starlette wraps in reverse order: the last added runs first.
    app.add_middleware(
        SecurityGuardMiddleware,
        settings=settings.security,
        events=events,
        identify=identify,
        rate_limiter=rate_limiter,
        health_paths=HEALTH_PATHS,
    )
    if settings.telemetry.enabled:
        app.add_middleware(TelemetryMiddleware, client=telemetry, clock=clock)
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (worker processes load settings themselves)."""
    from digitalme.logging import configure_logging
    from digitalme.monitoring.alerts import RuleFileError

    configure_logging()
    try:
        return create_app(load_settings())
    except RuleFileError as exc:  # one line naming the file, rule and field; no traceback
        raise SystemExit(f"digitalme: {exc}") from None
