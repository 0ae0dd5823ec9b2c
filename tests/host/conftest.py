"""Fixtures for the host's API tests: the app on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Playwright, sync_playwright

from accounts import JWT_SECRET, PASSWORD, Account, MakeAccount
from browser import launch
from conftest_servers import BACKENDS, backend_url
from digitalme.app import create_app
from digitalme.host.migrate import upgrade_async
from digitalme.host.security_events import SecurityEvent, SecurityEvents
from digitalme.host.users import create_user
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import Role, Settings, load_settings


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, str(tmp_path / "host.db"))


@pytest.fixture
def security_events() -> SecurityEvents:
    return SecurityEvents()


@pytest.fixture
def recorded_events(security_events: SecurityEvents) -> list[SecurityEvent]:
    events: list[SecurityEvent] = []
    security_events.subscribe(events.append)
    return events


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Tests override this fixture (or extend the dict) to change settings."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    base: dict[str, Any] = {
        "server": {"data_dir": str(tmp_path / "var")},
        "connection_strings": {"database": database_url},
        "auth": {"jwt_secret": JWT_SECRET},
        # No background health probing: tests count database and Claude calls exactly.
        # The health tests switch it on.
        "health": {"prober_enabled": False},
    }
    for key, value in settings_overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


@pytest.fixture
def telemetry_sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def monitoring(settings: Settings, clock: FakeClock, telemetry_sink: InMemorySink) -> Monitoring:
    return Monitoring(settings, clock=clock, sinks=[telemetry_sink], version="test", strict=True)


@pytest.fixture
async def app(
    settings: Settings,
    clock: FakeClock,
    security_events: SecurityEvents,
    monitoring: Monitoring,
) -> AsyncIterator[FastAPI]:
    await upgrade_async(settings.database_url)
    application = create_app(
        settings, clock=clock, security_events=security_events, monitoring=monitoring
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def make_account(app: FastAPI, clock: FakeClock) -> MakeAccount:
    """Create a user directly in the database and return it with a valid token."""
    counter = 0

    async def make(role: Role = Role.USER, email: str | None = None) -> Account:
        nonlocal counter
        counter += 1
        address = email or f"{role.value.lower()}{counter}@example.com"
        services = app.state.host
        async with services.database.sessions() as session:
            user = await create_user(session, clock, email=address, password=PASSWORD, role=role)
        token = services.auth.tokens.issue(user.id, role)
        return Account(id=user.id, email=address, role=role, token=token)

    return make


# The browser tests (dashboard, status page): one Chromium per test module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = launch(playwright)
    yield browser
    browser.close()
