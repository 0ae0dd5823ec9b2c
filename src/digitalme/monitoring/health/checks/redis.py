"""``redis``: write a unique key with a TTL, read it back, delete it, report memory.

The check keeps its own small client (not the rate limiter's), with timeouts on
connecting and on every command and no retries: a failed probe should say so at
once, not retry into the check's timeout. The key has a TTL so that a probe cut
short between write and delete leaves nothing behind for long.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from digitalme.monitoring.health.model import CheckFailed, HealthResult
from digitalme.monitoring.telemetry.instrumentation.redis_client import redis_target

__all__ = ["KEY_PREFIX", "KEY_TTL_SECONDS", "RedisCheck"]

KEY_PREFIX = "digitalme:health:"
KEY_TTL_SECONDS = 30
_MAX_CONNECTIONS = 2  # runs are single-flight; one spare for a reconnect


class RedisCheck:
    """Checks the Redis server at ``url`` (its password never appears in results)."""

    name = "redis"

    def __init__(self, url: str, *, timeout: float) -> None:
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=_MAX_CONNECTIONS,
        )
        self.target = redis_target(self._client)

    async def check(self) -> HealthResult:
        key = KEY_PREFIX + uuid.uuid4().hex
        value = uuid.uuid4().hex.encode()
        try:
            await self._client.set(key, value, ex=KEY_TTL_SECONDS)
            read = await self._client.get(key)
            await self._client.delete(key)
            memory = await self._client.info("memory")
        except Exception as exc:
            raise CheckFailed(
                "Redis connection failed", {"connected": False, "target": self.target}
            ) from exc
        if read != value:
            raise CheckFailed(
                "Redis read/write test failed", {"connected": True, "target": self.target}
            )
        return HealthResult.healthy(
            "Redis read, write and delete work",
            {
                "connected": True,
                "target": self.target,
                "used_memory": int(memory.get("used_memory", 0)),
                "used_memory_human": str(memory.get("used_memory_human", "")),
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()
