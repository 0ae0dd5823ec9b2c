"""Rate limiting through the whole app, in memory and on a real Redis server."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from digitalme.app import create_app
from digitalme.host.security_events import SecurityEvent, SecurityEventType
from digitalme.settings import Settings, load_settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def rapid_requests(app: FastAPI, count: int) -> Counter[int]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        responses = await asyncio.gather(*(http.get("/api/personality") for _ in range(count)))
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"] == "rate_limited"
    return Counter(response.status_code for response in responses)


async def test_plans_200_rapid_requests_in_memory(
    app: FastAPI, recorded_events: list[SecurityEvent]
) -> None:
    statuses = await rapid_requests(app, 200)
    assert statuses == {401: 100, 429: 100}
    assert sum(e.type is SecurityEventType.RATE_LIMIT for e in recorded_events) == 100
    assert all(e.client_ip == "198.51.100.7" for e in recorded_events)


@pytest.mark.redis
async def test_two_instances_share_one_budget_through_redis(
    settings: Settings, redis_url: str
) -> None:
    from digitalme.host.migrate import upgrade_async

    shared = load_settings(
        **{
            **settings.model_dump(mode="python"),
            "connection_strings": {"database": settings.database_url, "redis": redis_url},
        }
    )
    await upgrade_async(shared.database_url)
    first, second = create_app(shared), create_app(shared)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        one = await rapid_requests(first, 60)
        two = await rapid_requests(second, 60)
    assert one == {401: 60}
    assert two == {401: 40, 429: 20}
