"""The services the host's routes share, kept on ``app.state.host``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from digitalme.host.db import Database
from digitalme.host.security_events import SecurityEvents
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.performance import PerformanceMonitor
from digitalme.settings import Settings

if TYPE_CHECKING:
    from digitalme.host.auth.service import AuthService
    from digitalme.host.llm import ConversationModel


@dataclass
class HostServices:
    settings: Settings
    database: Database
    security_events: SecurityEvents
    clock: Clock
    auth: AuthService
    llm: ConversationModel | None
    performance: PerformanceMonitor | None = None
    telemetry: TelemetryClient | None = None  # the business metrics (profiles, conversations)


def get_services(request: Request) -> HostServices:
    services: HostServices = request.app.state.host
    return services


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_services(request).database.sessions() as session:
        yield session


Services = Annotated[HostServices, Depends(get_services)]
Session = Annotated[AsyncSession, Depends(get_session)]


def client_ip_of(request: Request) -> str:
    """The client IP the guard resolved (trusted proxies honoured), else the socket peer."""
    ip = request.scope.get("state", {}).get("client_ip")
    if isinstance(ip, str):
        return ip
    return request.client.host if request.client else "unknown"
