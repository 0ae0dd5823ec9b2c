"""The redis check against a real Redis server, killed and restarted."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from digitalme.monitoring.health import HealthStatus
from digitalme.monitoring.health.checks import RedisCheck
from digitalme.monitoring.health.checks.redis import KEY_PREFIX
from digitalme.monitoring.health.registry import HealthRegistry
from digitalme.monitoring.health.runner import HealthRunner
from servers import RedisServer, find_free_port

pytestmark = pytest.mark.redis


async def test_write_read_delete_and_memory(redis_url: str) -> None:
    check = RedisCheck(redis_url, timeout=2.0)
    try:
        result = await check.check()
    finally:
        await check.aclose()
    assert result.status is HealthStatus.HEALTHY
    assert result.data["connected"] is True
    assert result.data["used_memory"] > 0  # type: ignore[operator]
    assert str(result.data["used_memory_human"]).endswith(("K", "M", "B"))
    async with aioredis.Redis.from_url(redis_url) as client:
        assert await client.keys(f"{KEY_PREFIX}*") == []  # nothing left behind


async def test_killed_redis_is_a_failure_then_recovers(
    isolated_redis_server: RedisServer, registry: HealthRegistry, runner: HealthRunner
) -> None:
    check = RedisCheck(isolated_redis_server.url, timeout=1.0)
    registry.add(check, failure_status=HealthStatus.DEGRADED, timeout=2.0)
    try:
        assert (await runner.report(max_age=0)).status is HealthStatus.HEALTHY
        isolated_redis_server.kill()
        down = (await runner.report(max_age=0)).entries[0].result
        assert down.status is HealthStatus.DEGRADED
        assert down.description == "Redis connection failed"
        assert down.data["connected"] is False
        assert down.error is not None
        isolated_redis_server.restart()
        assert (await runner.report(max_age=0)).status is HealthStatus.HEALTHY
    finally:
        await registry.aclose()


async def test_the_password_never_shows(registry: HealthRegistry, runner: HealthRunner) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{find_free_port()}/3"
    check = RedisCheck(url, timeout=0.5)
    registry.add(check, failure_status=HealthStatus.DEGRADED, timeout=2.0)
    try:
        result = (await runner.report()).entries[0].result
    finally:
        await registry.aclose()
    assert result.status is HealthStatus.DEGRADED
    assert result.data["target"] == f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/3"
    assert "hunter2" not in repr(result)
