"""The admin uptime API through the real app with a real store: auth, figures, incidents,
the SLO, maintenance windows (which silence the covered checks' alerts) and deployments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts import Account, MakeAccount
from digitalme.app import create_app
from digitalme.host.migrate import upgrade_async
from digitalme.host.security_events import SecurityEvents
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.storage import upgrade_async as upgrade_store
from digitalme.monitoring.testing import FakeClock
from digitalme.monitoring.uptime.model import BeatStatus, Heartbeat, Source
from digitalme.settings import Role, Settings, load_settings

ROUTES = [
    ("GET", "/api/uptime"),
    ("GET", "/api/uptime/incidents"),
    ("GET", "/api/slo"),
    ("GET", "/api/maintenance"),
    ("POST", "/api/maintenance"),
    ("GET", "/api/maintenance/x"),
    ("PUT", "/api/maintenance/x"),
    ("DELETE", "/api/maintenance/x"),
    ("GET", "/api/deployments"),
    ("POST", "/api/deployments"),
    ("DELETE", "/api/deployments/x"),
]


@pytest.fixture
def configured(settings: Settings, tmp_path: Path) -> Settings:
    data = settings.model_dump(mode="json")
    data["connection_strings"]["telemetry_store"] = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    data["auth"]["jwt_secret"] = settings.auth.jwt_secret.get_secret_value()  # type: ignore[union-attr]
    data["connection_strings"]["database"] = settings.database_url
    return load_settings(**data)


@pytest.fixture
def monitoring(configured: Settings, clock: FakeClock) -> Monitoring:
    return Monitoring.from_settings(configured, clock=clock, version="uptime")


@pytest.fixture
async def app(
    configured: Settings, clock: FakeClock, monitoring: Monitoring
) -> AsyncIterator[FastAPI]:
    await upgrade_async(configured.database_url)
    await upgrade_store(configured.telemetry_store_url)
    application = create_app(
        configured, clock=clock, security_events=SecurityEvents(), monitoring=monitoring
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    account: Account = await make_account(Role.ADMIN)
    return account


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    message: str = body["message"]
    return message


async def record(monitoring: Monitoring, clock: FakeClock, statuses: str) -> None:
    """One heartbeat of ``database`` per 10 s: ``u`` up, ``d`` down."""
    assert monitoring.uptime is not None
    beats = []
    for index, letter in enumerate(statuses):
        at = clock.time() + index * 10.0
        status = BeatStatus.UP if letter == "u" else BeatStatus.DOWN
        beats.append(Heartbeat("database", Source.INSIDE, at, status, 10.0, duration_ms=4.0))
    assert await monitoring.uptime.recorder.record(beats)
    clock.advance(10.0 * (len(statuses) - 1))


async def test_admins_only(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    user = await make_account(Role.USER)
    for method, path in ROUTES:
        error(await client.request(method, path, json={}), 401, "unauthorized")
        error(await client.request(method, path, json={}, headers=user.headers), 403, "forbidden")


async def test_uptime_and_incidents_of_recorded_heartbeats(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    # 20 minutes: up, 3 minutes down (18 probes), up again
    await record(monitoring, clock, "u" * 61 + "d" * 18 + "u" * 41)
    answer = await client.get("/api/uptime?window=1h", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    [database] = answer.json()["components"]
    assert database["component"] == "database"
    assert database["status"] == "up"
    assert database["window"]["down_seconds"] == pytest.approx(180.0)
    assert database["window"]["uptime_percent"] == pytest.approx(100 * (1 - 180 / 1190), abs=1e-3)
    assert set(database["windows"]) == {"1h", "24h", "7d", "30d", "90d", "365d"}
    detail = await client.get("/api/uptime?window=1h&component=database", headers=admin.headers)
    buckets = detail.json()["components"][0]["buckets"]
    assert sum(b["down_seconds"] for b in buckets) == pytest.approx(180.0)
    assert all(
        b["response_ms"]["p95"] == pytest.approx(4.0, rel=0.02) for b in buckets if b["heartbeats"]
    )
    incidents = (
        await client.get("/api/uptime/incidents?component=database", headers=admin.headers)
    ).json()
    assert incidents["count"] == 1
    assert incidents["incidents"][0]["duration_seconds"] == pytest.approx(180.0)
    assert incidents["mttr_seconds"] == pytest.approx(180.0)
    assert incidents["mtbf_seconds"] == pytest.approx(1010.0)
    slo = (await client.get("/api/slo", headers=admin.headers)).json()
    assert slo["error_budget"]["total_minutes"] == pytest.approx(216.0)
    assert [tier["name"] for tier in slo["tiers"]] == [
        "page_fast",
        "page_slow",
        "ticket_fast",
        "ticket_slow",
    ]


async def test_bad_parameters_are_422_naming_them(
    client: httpx.AsyncClient, admin: Account
) -> None:
    assert "window" in error(
        await client.get("/api/uptime?window=2y", headers=admin.headers), 422, "validation_error"
    )
    assert "window" in error(
        await client.get("/api/uptime?window=400d", headers=admin.headers), 422, "validation_error"
    )
    assert "source" in error(
        await client.get("/api/uptime?source=moon", headers=admin.headers), 422, "validation_error"
    )
    assert "limit" in error(
        await client.get("/api/uptime/incidents?limit=0", headers=admin.headers),
        422,
        "validation_error",
    )
    error(
        await client.get("/api/uptime?component=nothing", headers=admin.headers), 404, "not_found"
    )
    bad = {"title": "x", "starts_at": "2026-01-01T02:00:00Z", "ends_at": "2026-01-01T01:00:00Z"}
    assert "ends_at" in error(
        await client.post("/api/maintenance", json=bad, headers=admin.headers),
        422,
        "validation_error",
    )
    naive = {"title": "x", "starts_at": "2026-01-01T01:00:00", "ends_at": "2026-01-01T02:00:00Z"}
    assert "starts_at" in error(
        await client.post("/api/maintenance", json=naive, headers=admin.headers),
        422,
        "validation_error",
    )
    assert "version" in error(
        await client.post("/api/deployments", json={}, headers=admin.headers),
        422,
        "validation_error",
    )
    error(
        await client.post("/api/deployments", content=b"{", headers=admin.headers),
        422,
        "validation_error",
    )


async def test_maintenance_crud_and_it_silences_the_covered_checks(
    client: httpx.AsyncClient, admin: Account, clock: FakeClock
) -> None:
    start = clock.now() - timedelta(minutes=1)
    window = {
        "title": "database upgrade",
        "components": ["database"],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
    }
    created = await client.post("/api/maintenance", json=window, headers=admin.headers)
    assert created.status_code == 201, created.text
    body = created.json()["maintenance"]
    assert body["active"] is True
    assert body["created_by"] == admin.email
    window_id = body["id"]
    for check, silenced in (("database", True), ("redis", False)):
        alert = {
            "title": f"{check} down",
            "severity": "Critical",
            "category": "Availability",
            "labels": {"check": check},
        }
        raised = await client.post("/api/alerts", json=alert, headers=admin.headers)
        assert raised.status_code == 201, raised.text
        assert raised.json()["alert"]["silenced"] is silenced
    weekly = {**window, "recurrence": "weekly", "title": "weekly"}
    replaced = await client.put(f"/api/maintenance/{window_id}", json=weekly, headers=admin.headers)
    assert replaced.json()["maintenance"]["recurrence"] == "weekly"
    listed = (await client.get("/api/maintenance", headers=admin.headers)).json()["maintenance"]
    assert [w["title"] for w in listed] == ["weekly"]
    assert listed[0]["next_occurrence"] is not None
    assert (
        await client.delete(f"/api/maintenance/{window_id}", headers=admin.headers)
    ).status_code == 204
    error(
        await client.get(f"/api/maintenance/{window_id}", headers=admin.headers), 404, "not_found"
    )


async def test_deployments_are_recorded_listed_and_deleted(
    client: httpx.AsyncClient, admin: Account
) -> None:
    made = await client.post(
        "/api/deployments",
        json={"version": "1.4.2", "description": "blue/green"},
        headers=admin.headers,
    )
    assert made.status_code == 201, made.text
    deployment = made.json()["deployment"]
    assert deployment["deployed_by"] == admin.email
    timeline = (await client.get("/api/uptime?window=1h", headers=admin.headers)).json()
    assert [d["version"] for d in timeline["deployments"]] == ["1.4.2"]
    listed = (await client.get("/api/deployments?window=1h", headers=admin.headers)).json()
    assert [d["version"] for d in listed["deployments"]] == ["1.4.2"]
    assert (
        await client.delete(f"/api/deployments/{deployment['id']}", headers=admin.headers)
    ).status_code == 204
    error(
        await client.delete(f"/api/deployments/{deployment['id']}", headers=admin.headers),
        404,
        "not_found",
    )
