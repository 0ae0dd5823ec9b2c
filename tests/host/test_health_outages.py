"""Health through outages of real servers: PostgreSQL halted and restarted, Redis killed and
restarted, and everything down at once. The prober runs on a short interval, on real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts import JWT_SECRET
from digitalme.app import create_app
from digitalme.host.migrate import upgrade_async
from digitalme.monitoring.bus import Subscription
from digitalme.monitoring.clock import SystemClock
from digitalme.monitoring.dashboard.backplane import BackplaneStatus
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.health import HEALTH_CHANGED_TOPIC, HealthChange, HealthStatus
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.storage import upgrade_async as upgrade_store
from digitalme.monitoring.testing import InMemorySink
from digitalme.settings import Role, Settings, load_settings
from polling import eventually
from servers import PostgresServer, RedisServer, find_free_port

PROBE_INTERVAL = 0.2  # seconds
SCHEDULING_SLACK = 1.0  # seconds a loaded 2-core machine may add to one round
DEADLINE = 20.0  # seconds; a bound for waiting, never a timing assertion
SECRET = "outage-secret-pw"


def outage_settings(tmp_path: Path, **overrides: Any) -> Settings:
    health = {
        "probe_interval": PROBE_INTERVAL,
        "cache_seconds": 0.1,
        "check_timeout": 3.0,
        "process": {"enabled": False},
        "claude": {"enabled": False},
        **overrides.pop("health", {}),
    }
    return load_settings(
        server={"data_dir": str(tmp_path / "var")},
        auth={"jwt_secret": JWT_SECRET},
        health=health,
        **overrides,
    )


@asynccontextmanager
async def serving(
    settings: Settings, monitoring: Monitoring | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    clock = SystemClock()
    monitoring = monitoring or Monitoring.from_settings(settings, clock=clock)
    app = create_app(settings, clock=clock, monitoring=monitoring)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


async def next_change(
    subscription: Subscription, subject: str, status: HealthStatus, timeout: float
) -> HealthChange:
    async with asyncio.timeout(timeout):
        while True:
            change = (await subscription.get()).payload
            assert isinstance(change, HealthChange)
            if change.subject == subject and change.current is status:
                return change


def statuses(response: httpx.Response) -> dict[str, str]:
    return {item["name"]: item["status"] for item in response.json()["results"]}


async def healthy(app: FastAPI) -> None:
    prober = app.state.monitoring.health.prober
    await eventually(
        lambda: prober.status() is HealthStatus.HEALTHY, timeout=DEADLINE, what="healthy"
    )


@pytest.mark.postgres
async def test_a_stopped_postgresql_is_unhealthy_within_one_probe_interval(
    isolated_postgres_server: PostgresServer, tmp_path: Path
) -> None:
    postgres = isolated_postgres_server
    postgres.create_database("host")
    postgres.create_database("telemetry")
    settings = outage_settings(
        tmp_path,
        connection_strings={
            "database": postgres.async_url("host"),
            "telemetry_store": postgres.async_url("telemetry"),
        },
        # the hub's store backplane would be Degraded too, at its own pace: not this test's
        cluster={"backplane": False},
    )
    await upgrade_async(settings.database_url)
    await upgrade_store(settings.telemetry_store_url)
    async with serving(settings) as (app, http):
        changes = app.state.monitoring.bus.subscribe(HEALTH_CHANGED_TOPIC)
        await healthy(app)
        assert statuses(await http.get("/health")) == {
            "database": "Healthy",
            "telemetry-store": "Healthy",
        }

        await asyncio.to_thread(postgres.halt)
        halted = asyncio.get_running_loop().time()
        change = await next_change(changes, "database", HealthStatus.UNHEALTHY, DEADLINE)
        noticed = asyncio.get_running_loop().time() - halted
        assert noticed <= PROBE_INTERVAL + SCHEDULING_SLACK, noticed
        assert change.previous is HealthStatus.HEALTHY
        assert change.description == "Database connection failed"

        response = await http.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "Unhealthy"
        assert statuses(response) == {"database": "Unhealthy", "telemetry-store": "Degraded"}
        assert (await http.get("/health/ready")).status_code == 503
        assert (await http.get("/health/live")).status_code == 200

        await asyncio.to_thread(postgres.restart)
        await next_change(changes, "overall", HealthStatus.HEALTHY, DEADLINE)
        response = await http.get("/health")
        assert response.status_code == 200
        assert statuses(response) == {"database": "Healthy", "telemetry-store": "Healthy"}
        history = [(c.subject, c.current) for c in app.state.monitoring.health.prober.history()]
        assert ("database", HealthStatus.UNHEALTHY) in history
        assert history[-1] == ("overall", HealthStatus.HEALTHY)


@pytest.mark.redis
async def test_a_killed_redis_degrades_health_then_recovers(
    isolated_redis_server: RedisServer, tmp_path: Path
) -> None:
    redis = isolated_redis_server
    settings = outage_settings(tmp_path, connection_strings={"redis": redis.url})
    await upgrade_async(settings.database_url)
    await upgrade_store(settings.telemetry_store_url)
    async with serving(settings) as (app, http):
        changes = app.state.monitoring.bus.subscribe(HEALTH_CHANGED_TOPIC)
        await healthy(app)
        await asyncio.to_thread(redis.kill)
        found = await both_changed(changes, ("redis", "hub-backplane"), HealthStatus.DEGRADED)
        assert found["redis"].description == "Redis connection failed"
        assert "serves this instance's clients only" in found["hub-backplane"].description

        response = await http.get("/health")
        assert response.status_code == 200
        assert response.json()["status"] == "Degraded"
        assert statuses(response) == {
            "telemetry-store": "Healthy",
            "redis": "Degraded",
            "hub-backplane": "Degraded",
            "database": "Healthy",
        }

        await asyncio.to_thread(redis.restart)
        await both_changed(changes, ("redis", "hub-backplane"), HealthStatus.HEALTHY)
        after = statuses(await http.get("/health"))
        assert after["redis"] == after["hub-backplane"] == "Healthy"


async def both_changed(
    subscription: Subscription, subjects: tuple[str, ...], status: HealthStatus
) -> dict[str, HealthChange]:
    """The changes of every one of ``subjects`` to ``status``, in whatever order they come."""
    found: dict[str, HealthChange] = {}
    async with asyncio.timeout(DEADLINE):
        while len(found) < len(subjects):
            change = (await subscription.get()).payload
            assert isinstance(change, HealthChange)
            if change.subject in subjects and change.current is status:
                found[change.subject] = change
    return found


async def test_live_answers_when_every_dependency_is_down(tmp_path: Path) -> None:
    nowhere = [find_free_port() for _ in range(4)]
    settings = outage_settings(
        tmp_path,
        connection_strings={
            "database": f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:{nowhere[0]}/app",
            "telemetry_store": f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:{nowhere[1]}/t",
            "redis": f"redis://:{SECRET}@127.0.0.1:{nowhere[2]}/0",
        },
        claude={
            "api_key": "sk-ant-api03-down",
            "base_url": f"http://127.0.0.1:{nowhere[3]}",
            "timeout": 1.0,
            "max_retries": 0,
        },
        health={"claude": {"enabled": True, "min_interval": 0}, "prober_enabled": False},
    )
    clock = SystemClock()
    store = TelemetryStore(settings.telemetry_store_url, clock=clock)
    # The store is checked but is no sink: nothing has to drain into it at shutdown.
    monitoring = Monitoring(settings, clock=clock, store=store, sinks=[InMemorySink()])
    async with serving(settings, monitoring) as (app, http):
        live = await http.get("/health/live")
        assert live.status_code == 200
        assert live.json()["status"] == "UP"
        backplane = monitoring.backplane
        assert backplane is not None
        await eventually(  # its first connection attempt has failed (until then: "connecting")
            lambda: backplane.state.status is BackplaneStatus.DISCONNECTED,
            timeout=DEADLINE,
            what="the backplane's first attempt refused",
        )

        response = await http.get("/health")
        assert response.status_code == 503
        assert statuses(response) == {
            "telemetry-store": "Degraded",
            "redis": "Degraded",
            "hub-backplane": "Degraded",
            "database": "Unhealthy",
            "claude-api": "Degraded",
        }
        # An admin token cannot be verified without the database: the anonymous answer.
        token = app.state.host.auth.tokens.issue(1, Role.ADMIN)
        as_admin = await http.get("/health", headers={"Authorization": f"Bearer {token}"})
        assert as_admin.status_code == 503
        assert "exception" not in as_admin.json()["results"][0]
    await store.close()
    assert SECRET not in response.text
