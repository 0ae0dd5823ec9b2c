"""The endpoints on a bare Starlette app: JSON shape, codes, details, caching, single flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from digitalme.monitoring.health import (
    EXTERNAL,
    HealthEntry,
    HealthReport,
    HealthResult,
    HealthStatus,
)
from digitalme.monitoring.health.endpoints import report_body
from digitalme.monitoring.health.service import HealthMonitor
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.testing import FakeClock, ScriptedCheck
from digitalme.settings import load_settings

ADMIN = {"Authorization": "Bearer admin"}
ANONYMOUS_KEYS = {"name", "status", "duration", "description"}
DETAIL_KEYS = ANONYMOUS_KEYS | {"data", "exception"}


async def admin_only(request: Request) -> bool:
    return request.headers.get("authorization") == ADMIN["Authorization"]


def make_monitor(clock: FakeClock, **health: Any) -> HealthMonitor:
    settings = load_settings(health={"prober_enabled": False, **health})
    return HealthMonitor(settings.health, clock=clock, redactor=Redactor())


@pytest.fixture
def monitor(clock: FakeClock) -> HealthMonitor:
    return make_monitor(clock)


def client_for(
    monitor: HealthMonitor, authorize: Callable[[Request], Awaitable[bool]] = admin_only
) -> httpx.AsyncClient:
    app = Starlette(routes=monitor.routes(authorize))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(monitor: HealthMonitor) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(monitor) as http:
        yield http
    await monitor.stop()


async def test_anonymous_callers_get_statuses_only(
    monitor: HealthMonitor, client: httpx.AsyncClient
) -> None:
    failing = ScriptedCheck("store")
    failing.error = OSError("refused by postgresql://u:secretpw@db/x")
    monitor.add(failing, failure_status=HealthStatus.DEGRADED)
    monitor.add(ScriptedCheck("database", HealthResult.healthy("up", {"total_users": 3})))
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"status", "totalDuration", "timestamp", "results"}
    assert body["status"] == "Degraded"
    assert body["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert [set(item) for item in body["results"]] == [ANONYMOUS_KEYS, ANONYMOUS_KEYS]
    assert "secretpw" not in response.text
    assert "total_users" not in response.text


async def test_admins_get_data_and_redacted_exceptions(
    monitor: HealthMonitor, client: httpx.AsyncClient
) -> None:
    failing = ScriptedCheck("store")
    failing.error = OSError("refused by postgresql://u:secretpw@db/x")
    monitor.add(failing, failure_status=HealthStatus.DEGRADED)
    monitor.add(ScriptedCheck("database", HealthResult.healthy("up", {"total_users": 3})))
    body = (await client.get("/health", headers=ADMIN)).json()
    results = {item["name"]: item for item in body["results"]}
    assert all(set(item) == DETAIL_KEYS for item in results.values())
    assert results["database"]["data"] == {"total_users": 3}
    assert results["database"]["exception"] is None
    assert results["store"]["exception"].startswith("OSError: refused by postgresql://u:")
    assert "secretpw" not in results["store"]["exception"]


async def test_show_details_opens_them_to_everyone(clock: FakeClock) -> None:
    monitor = make_monitor(clock, show_details=True)
    monitor.add(ScriptedCheck("database", HealthResult.healthy("up", {"total_users": 3})))
    async with client_for(monitor) as http:
        body = (await http.get("/health")).json()
    assert body["results"][0]["data"] == {"total_users": 3}


async def test_an_authorize_that_fails_means_anonymous(
    monitor: HealthMonitor,
) -> None:
    async def broken(_: Request) -> bool:
        raise ConnectionError("the user database is down")

    monitor.add(ScriptedCheck("database"))
    async with client_for(monitor, broken) as http:
        response = await http.get("/health", headers=ADMIN)
    assert response.status_code == 200
    assert set(response.json()["results"][0]) == ANONYMOUS_KEYS


@pytest.mark.parametrize(
    ("status", "code"),
    [(HealthStatus.HEALTHY, 200), (HealthStatus.DEGRADED, 200), (HealthStatus.UNHEALTHY, 503)],
)
async def test_status_codes(
    monitor: HealthMonitor, client: httpx.AsyncClient, status: HealthStatus, code: int
) -> None:
    monitor.add(ScriptedCheck("one", HealthResult(status, "as told")))
    response = await client.get("/health")
    assert (response.status_code, response.json()["status"]) == (code, str(status))


def test_durations_are_milliseconds() -> None:
    result = HealthResult(HealthStatus.HEALTHY, "ok", duration=0.0123456)
    entry = HealthEntry("x", result, frozenset(), datetime(2026, 1, 1, tzinfo=UTC))
    body = report_body(HealthReport((entry,), entry.checked_at), details=False)
    assert body["totalDuration"] == 12.346
    assert body["results"][0]["duration"] == 12.346


async def test_ready_leaves_external_checks_out(
    monitor: HealthMonitor, client: httpx.AsyncClient
) -> None:
    external = ScriptedCheck("claude-api", HealthResult.unhealthy("down"))
    monitor.add(external, tags=[EXTERNAL])
    monitor.add(ScriptedCheck("database"), tags=["ready"])
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert [item["name"] for item in ready.json()["results"]] == ["database"]
    assert external.calls == 0
    everything = await client.get("/health")
    assert everything.status_code == 503


async def test_live_touches_nothing(monitor: HealthMonitor, client: httpx.AsyncClient) -> None:
    check = ScriptedCheck("database")
    check.hang()
    monitor.add(check)
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "UP", "timestamp": "2026-01-01T00:00:00+00:00"}
    assert response.headers["cache-control"] == "no-store"
    assert check.calls == 0


async def test_100_concurrent_requests_cause_one_run_per_check(
    monitor: HealthMonitor, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    checks = [ScriptedCheck(name, delay=0.1) for name in ("database", "redis", "claude-api")]
    for check in checks:
        monitor.add(check)
    responses = await asyncio.gather(*(client.get("/health") for _ in range(100)))
    assert {response.status_code for response in responses} == {200}
    assert [check.calls for check in checks] == [1, 1, 1]
    # Still cached for the next caller; a new run once cache_seconds have passed.
    await client.get("/health")
    assert [check.calls for check in checks] == [1, 1, 1]
    clock.advance(monitor.settings.cache_seconds)
    await client.get("/health")
    assert [check.calls for check in checks] == [2, 2, 2]
