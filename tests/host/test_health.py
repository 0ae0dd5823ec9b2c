"""The host's health checks through the whole app: database, Claude (a real local
Anthropic-compatible server), who sees details, the health rate limit, single flight."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts import PASSWORD, MakeAccount
from digitalme.host.llm import ClaudeModel
from digitalme.monitoring.clock import SystemClock
from digitalme.monitoring.health import HealthStatus
from digitalme.monitoring.testing import ScriptedCheck
from digitalme.settings import Role
from fake_anthropic import UPSTREAM_SECRET_DETAIL, FakeAnthropic

API_KEY = "sk-ant-api03-health-test-key-never-shown"
MODEL = "claude-test-model"
ANONYMOUS_KEYS = {"name", "status", "duration", "description"}
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def clock() -> SystemClock:
    """Real time: checks time themselves (the Claude check's slow threshold) and caches expire."""
    return SystemClock()


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def health_overrides() -> dict[str, Any]:
    """Tests parametrize this to change ``health`` settings."""
    return {}


@pytest.fixture
def settings_overrides(
    fake_claude: FakeAnthropic, health_overrides: dict[str, Any]
) -> dict[str, Any]:
    return {
        "claude": {
            "api_key": API_KEY,
            "base_url": fake_claude.base_url,
            "model": MODEL,
            "timeout": 5.0,
            "max_retries": 0,
        },
        "health": {
            "prober_enabled": False,
            "cache_seconds": 0,
            "rate_limit_per_ip": "1000/minute",
            "process": {"enabled": False},
            "claude": {"min_interval": 0, "slow_threshold": 1.0},
            **health_overrides,
        },
    }


def results(response: httpx.Response) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in response.json()["results"]}


async def admin_headers(make_account: MakeAccount) -> dict[str, str]:
    admin = await make_account(Role.ADMIN)
    headers: dict[str, str] = admin.headers
    return headers


async def test_database_check_counts_users_and_active_ones(
    client: httpx.AsyncClient, make_account: MakeAccount, database_url: str
) -> None:
    headers = await admin_headers(make_account)
    user = await make_account()
    never_logged_in = await make_account()
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200
    assert never_logged_in.id

    response = await client.get("/health", headers=headers)
    assert response.status_code == 200
    database = results(response)["database"]
    assert database["status"] == "Healthy"
    assert database["data"] == {
        "provider": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "total_users": 3,
        "active_users_last_24_hours": 1,
    }


@SQLITE_ONLY
async def test_claude_check_asks_for_the_model_with_the_hosts_client(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount, fake_claude: FakeAnthropic
) -> None:
    assert isinstance(app.state.host.llm, ClaudeModel)
    response = await client.get("/health", headers=await admin_headers(make_account))
    claude = results(response)["claude-api"]
    assert claude["status"] == "Healthy"
    assert claude["data"]["model"] == MODEL
    assert claude["data"]["lifecycle"] == "active"
    [probe] = fake_claude.model_requests
    assert probe.path == f"/v1/models/{MODEL}"
    assert probe.headers["authorization"] == f"Bearer {API_KEY}"
    assert [r for r in fake_claude.requests if r.method == "POST"] == []  # no tokens spent


@SQLITE_ONLY
@pytest.mark.parametrize("health_overrides", [{"claude": {"slow_threshold": 0.2}}])
async def test_a_slow_claude_api_is_degraded(
    client: httpx.AsyncClient, make_account: MakeAccount, fake_claude: FakeAnthropic
) -> None:
    fake_claude.slow(0.5)
    response = await client.get("/health", headers=await admin_headers(make_account))
    assert response.status_code == 200
    assert response.json()["status"] == "Degraded"
    claude = results(response)["claude-api"]
    assert claude["status"] == "Degraded"
    assert claude["description"].startswith("Claude API is slow")
    assert claude["data"]["response_time_ms"] >= 500


@SQLITE_ONLY
@pytest.mark.parametrize("status", [500, 401, 529])
async def test_a_failing_claude_api_is_degraded_and_says_nothing_secret(
    client: httpx.AsyncClient, make_account: MakeAccount, fake_claude: FakeAnthropic, status: int
) -> None:
    fake_claude.fail(status)
    response = await client.get("/health", headers=await admin_headers(make_account))
    assert response.status_code == 200
    claude = results(response)["claude-api"]
    assert claude["status"] == "Degraded"
    assert claude["description"] == "Claude API call failed"
    assert claude["exception"] == (
        f"LlmUpstreamError: the conversation model answered HTTP {status}"
    )
    assert UPSTREAM_SECRET_DETAIL not in response.text
    assert API_KEY not in response.text
    assert len(fake_claude.model_requests) == 1  # no retries from a health probe


@SQLITE_ONLY
async def test_a_retired_model_is_degraded(
    client: httpx.AsyncClient, fake_claude: FakeAnthropic
) -> None:
    fake_claude.model_lifecycle = "retired"
    claude = results(await client.get("/health"))["claude-api"]
    assert (claude["status"], claude["description"]) == (
        "Degraded",
        f"Claude model {MODEL} is retired",
    )


@SQLITE_ONLY
@pytest.mark.parametrize("settings_overrides", [{"claude": {"api_key": None}}])
async def test_claude_not_configured_is_degraded(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    claude = results(response)["claude-api"]
    assert claude["status"] == "Degraded"
    assert "not configured" in claude["description"]


@SQLITE_ONLY
async def test_ready_never_calls_claude(
    client: httpx.AsyncClient, fake_claude: FakeAnthropic
) -> None:
    fake_claude.fail(500)
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert set(results(response)) == {"database"}
    assert fake_claude.model_requests == []


@SQLITE_ONLY
async def test_details_are_for_admins(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    user = await make_account()
    for headers in ({}, user.headers, {"Authorization": "Bearer not-a-token"}):
        response = await client.get("/health", headers=headers)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert all(set(item) == ANONYMOUS_KEYS for item in response.json()["results"])
    admin = await client.get("/health", headers=await admin_headers(make_account))
    assert all("data" in item and "exception" in item for item in admin.json()["results"])


@SQLITE_ONLY
@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "health": {"rate_limit_per_ip": "5/minute"},
            "security": {"rate_limit_per_ip": "3/minute"},
        }
    ],
)
async def test_health_endpoints_have_their_own_rate_limit(client: httpx.AsyncClient) -> None:
    lives = [(await client.get("/health/live")).status_code for _ in range(6)]
    assert lives == [200] * 5 + [429]
    refused = await client.get("/health")
    assert refused.status_code == 429
    assert set(refused.json()) == {"error", "message", "request_id"}
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # The API's budget was not touched by the probes, and is its own.
    api = [(await client.get("/api/personality")).status_code for _ in range(4)]
    assert api == [401, 401, 401, 429]


@SQLITE_ONLY
@pytest.mark.parametrize("health_overrides", [{"cache_seconds": 5.0}])
async def test_100_concurrent_requests_cause_one_call_per_check(
    app: FastAPI, client: httpx.AsyncClient, fake_claude: FakeAnthropic
) -> None:
    counted = ScriptedCheck("counted", delay=0.2)
    app.state.monitoring.health.add(counted)
    fake_claude.slow(0.3)  # every request arrives while the first call is in flight
    responses = await asyncio.gather(*(client.get("/health") for _ in range(100)))
    assert {response.status_code for response in responses} == {200}
    assert {response.json()["status"] for response in responses} == {"Healthy"}
    assert counted.calls == 1
    assert len(fake_claude.model_requests) == 1
    # And the next callers within cache_seconds are served from the cache.
    await asyncio.gather(*(client.get("/health") for _ in range(10)))
    assert (counted.calls, len(fake_claude.model_requests)) == (1, 1)
    report = await app.state.monitoring.health.report()
    assert report.status is HealthStatus.HEALTHY
