"""The host under monitoring: requests by route template, security events, context, /metrics."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from accounts import MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.items import ExceptionItem, RequestItem, SecurityEventItem
from digitalme.monitoring.testing import InMemorySink
from digitalme.settings import Role

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_requests_are_named_by_route_template_with_context(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    monitoring: Monitoring,
    telemetry_sink: InMemorySink,
) -> None:
    account = await make_account(Role.USER)
    created = await client.post("/api/personality", json={"name": "A"}, headers=account.headers)
    profile_id = created.json()["id"]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await client.get(
        f"/api/personality/{profile_id}",
        headers={
            **account.headers,
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
            "User-Agent": "pytest-agent",
        },
    )
    await client.get("/api/personality/999999", headers=account.headers)
    await client.get("/no/such/route")
    await monitoring.pipeline.flush()

    requests = telemetry_sink.of_kind(RequestItem)
    names = [(r.name, r.status_code, r.success) for r in requests]
    assert names == [
        ("POST /api/personality", 201, True),
        ("GET /api/personality/{profile_id}", 200, True),
        ("GET /api/personality/{profile_id}", 404, False),
        ("GET <unmatched>", 404, False),
    ]
    traced = requests[1]
    assert traced.properties["OperationId"] == trace_id
    assert traced.properties["UserAgent"] == "pytest-agent"
    assert traced.properties["AuthenticatedUserId"] == str(account.id)
    assert traced.properties["UserRole"] == "User"
    assert traced.properties["ClientIP"] == "127.0.0.1"
    assert traced.properties["RequestId"] == traced.context.request_id if traced.context else False
    assert traced.properties["RequestPath"] == f"/api/personality/{profile_id}"


async def test_the_monitoring_routes_are_named_too(
    client: httpx.AsyncClient, monitoring: Monitoring, telemetry_sink: InMemorySink
) -> None:
    """Health, /metrics and the admin API are plain Starlette routes on a FastAPI app:
    named by their template, never lumped with unknown paths."""
    for path in ("/health/live", "/health", "/metrics", "/api/alerts", "/api/alerts/x"):
        await client.get(path)
    await monitoring.pipeline.flush()

    assert [r.name for r in telemetry_sink.of_kind(RequestItem)] == [
        "GET /health/live",
        "GET /health",
        "GET /metrics",
        "GET /api/alerts",
        "GET /api/alerts/{alert_id}",
    ]


async def test_security_events_flow_into_telemetry(
    client: httpx.AsyncClient, monitoring: Monitoring, telemetry_sink: InMemorySink
) -> None:
    await client.post("/api/personality", json={"name": "<script>alert(1)</script>"})
    await client.get("/api/auth/me", headers={"Authorization": "Bearer forged.token.value"})
    await monitoring.pipeline.flush()
    events = telemetry_sink.of_kind(SecurityEventItem)
    assert [(e.event_type, str(e.severity)) for e in events] == [
        ("XssScript", "High"),
        ("UnauthorizedAccess", "High"),
    ]
    assert events[0].client_ip == "127.0.0.1"
    assert "forged.token.value" not in repr(telemetry_sink.items)
    [critical] = telemetry_sink.of_kind(ExceptionItem)
    assert critical.type == "SecurityException"


async def test_unhandled_exceptions_are_recorded(
    app: Any, monitoring: Monitoring, telemetry_sink: InMemorySink
) -> None:
    async def explode() -> None:
        raise RuntimeError("kaboom token=abc123secret")

    app.add_api_route("/explode", explode)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/explode")).status_code == 500
    await monitoring.pipeline.flush()
    [exception] = telemetry_sink.of_kind(ExceptionItem)
    assert exception.type == "RuntimeError"
    assert "abc123secret" not in exception.message + exception.stack
    [request] = telemetry_sink.of_kind(RequestItem)
    assert (request.name, request.status_code, request.success) == ("GET /explode", 500, False)


async def test_metrics_endpoint_needs_admin_or_scrape_token(
    client: httpx.AsyncClient, make_account: MakeAccount, monitoring: Monitoring
) -> None:
    user = await make_account(Role.USER)
    admin = await make_account(Role.ADMIN)
    await client.get("/api/personality", headers=user.headers)
    monitoring.pipeline.process(force=True)
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=user.headers)).status_code == 401
    scraped = await client.get("/metrics", headers=admin.headers)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert re.search(
        r'digitalme_http_server_duration_count\{route="GET /api/personality",'
        r'status_code="200",success="true"\} 1\.0',
        text,
    )
    assert "digitalme_telemetry_dropped_total" in text or "digitalme_telemetry_dropped" in text
    assert "digitalme_telemetry_buffer_items" in text


@pytest.mark.parametrize(
    "settings_overrides",
    [{"metrics": {"scrape_token": "prometheus-scrape-token-0123"}}],
)
async def test_static_scrape_token(client: httpx.AsyncClient) -> None:
    ok = await client.get(
        "/metrics", headers={"Authorization": "Bearer prometheus-scrape-token-0123"}
    )
    assert ok.status_code == 200
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.status_code == 401
