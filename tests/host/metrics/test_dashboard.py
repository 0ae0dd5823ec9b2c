"""``GET /api/metrics/dashboard``: every section at once, from the same recorded traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts import Account, MakeAccount
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Role

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DASHBOARD = "/api/metrics/dashboard"
SECTIONS = {
    "window",
    "system",
    "performance",
    "security",
    "business",
    "health",
    "active_alerts",
}


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "connection_strings": {"telemetry_store": f"sqlite+aiosqlite:///{tmp_path}/telemetry.db"},
        "security": {"rate_limit_enabled": False},
    }


async def dashboard(client: httpx.AsyncClient, admin: Account, **params: str) -> dict[str, Any]:
    response = await client.get(DASHBOARD, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_section_from_the_same_traffic(
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
) -> None:
    user = await make_account(Role.USER)
    for _ in range(20):
        await client.get("/api/personality", headers=user.headers)
    for _ in range(3):
        await client.get("/api/personality", params={"q": "' OR '1'='1"})
    raised = await client.post(
        "/api/alerts",
        json={"title": "Disk almost full", "severity": "High", "category": "Availability"},
        headers=admin.headers,
    )
    assert raised.status_code == 201
    assert await monitoring.pipeline.flush()
    clock.advance(60)

    body = await dashboard(client, admin, window="1h")

    assert set(body) == SECTIONS
    assert body["window"] == {
        "start": "2025-12-31T23:01:00+00:00",
        "end": "2026-01-01T00:01:00+00:00",
    }
    assert body["system"]["memory"]["rss_bytes"] > 0
    performance = body["performance"]
    # 20 + 3 refused + the alert POST: every request through the app in the hour
    assert performance["requests"] == 24
    assert body["security"]["threat_detections"]["SqlInjection"] == 3
    assert body["health"]["status"] in ("Healthy", "Degraded")
    assert {result["name"] for result in body["health"]["results"]} >= {"database"}
    assert sorted(alert["title"] for alert in body["active_alerts"]) == [
        "Disk almost full",  # raised by hand
        "SqlInjection from 127.0.0.1",  # raised by the attempts
    ]


async def test_the_window_is_checked(client: httpx.AsyncClient, admin: Account) -> None:
    for params, message in [
        ({"window": "30d"}, "window: 30d is longer than the maximum (7d)"),
        ({"window": "soon"}, "window:"),
        ({"start": "1h"}, "start: unknown parameter"),
    ]:
        response = await client.get(DASHBOARD, params=params, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
        assert response.json()["message"].startswith(message)


async def test_a_failing_section_does_not_take_the_others_down(
    client: httpx.AsyncClient,
    admin: Account,
    monitoring: Monitoring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(window: TimeWindow) -> dict[str, Any]:
        raise ConnectionError("store unreachable")

    monkeypatch.setattr(monitoring.security_reader, "read", broken)

    body = await dashboard(client, admin)

    assert body["security"] == {"error": "ConnectionError"}
    assert body["performance"]["requests"] >= 0
    assert body["active_alerts"] == []
