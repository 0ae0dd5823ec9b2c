"""Rate limits per client IP and per authenticated identity, over the ``limits`` library.

Strategy: the **moving window** (``MovingWindowRateLimiter``). "100/minute" then
means what it says, at most 100 requests in *any* 60 seconds. A fixed window
(one counter per key, reset when it expires) lets a client send 100 requests at
the end of one window and 100 more at the start of the next: twice the limit
within a second, which is exactly the burst a limit is there to stop. The moving
window's price is one timestamp per counted request instead of one counter per
key (bounded by the limit itself: 100 or 300 entries per client) and, on Redis,
one atomic Lua script per hit; a fair trade at these limits. A refused hit is
not recorded, so a client that keeps hammering is let back in as soon as its
oldest counted request ages out, and ``Retry-After`` says exactly when that is.

Storage is in process by default (one instance) and Redis when a URL is given,
so that several instances share one budget per client.

**Fail open.** The limiter protects the service; it must never be the reason the
service is down. When the storage fails (Redis unreachable, slow, refusing) the
request is allowed, the outage is logged once when it starts and once when it
ends, and for ``retry_interval`` seconds after a failure the storage is not asked
at all, so an outage costs requests neither latency nor errors.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.asyncio import BlockingConnectionPool

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.instrumentation.redis_client import instrument_redis
from digitalme.settings import SecuritySettings

__all__ = ["ALLOWED", "LimitScope", "RateLimitDecision", "RateLimiter"]

log = structlog.get_logger("digitalme.guard")

_NAMESPACE = "digitalme-guard"
_MAX_CONNECTIONS = 16  # per process; Redis runs one command at a time anyway
_CONNECTION_WAIT = 2.0  # seconds a request may queue for a free connection
# The schemes ``limits`` registers for its asyncio Redis storage.
_LIMITS_SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}


class LimitScope(StrEnum):
    """Which budget a request was counted against."""

    IP = "ip"
    USER = "user"
    HEALTH = "health"
    """Requests to the health endpoints, per client IP, apart from the general IP budget."""


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """Whether to serve a request; when not, how long to wait and which limit refused it."""

    allowed: bool
    retry_after: int = 0
    """Whole seconds, at least 1, when refused."""
    scope: LimitScope | None = None
    limit: str | None = None
    """The refusing limit in words, e.g. ``100 per 1 minute``."""


ALLOWED = RateLimitDecision(allowed=True)


class RateLimiter:
    """Counts requests per client IP and, when given, per identity; see the module docs.

    ``per_ip`` and ``per_user`` use the ``limits`` notation, several limits joined
    by ``;`` (``"100/minute; 1000/hour"``); so does ``health_per_ip``, the budget of
    the health endpoints (None: unlimited), counted by :meth:`check_health`.
    ``storage_url`` is a Redis URL (``redis://``, ``rediss://``, ``unix://``,
    optionally prefixed ``async+``); None keeps the counts in this process.
    ``timeout`` bounds each Redis operation; it is loose on purpose, because
    under load the event loop itself can lag by hundreds of milliseconds and a
    tight bound would turn that lag into spurious fail-open; ``clock`` times the
    pause after a storage failure. (The windows themselves are timed by
    ``limits`` on the wall clock and cannot be injected.)
    """

    def __init__(
        self,
        per_ip: str,
        per_user: str,
        *,
        health_per_ip: str | None = None,
        storage_url: str | None = None,
        timeout: float = 1.0,
        retry_interval: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._limits: dict[LimitScope, list[RateLimitItem]] = {
            LimitScope.IP: parse_many(per_ip),
            LimitScope.USER: parse_many(per_user),
            LimitScope.HEALTH: parse_many(health_per_ip) if health_per_ip else [],
        }
        self._pool: BlockingConnectionPool | None = None
        self._storage = self._open_storage(storage_url, timeout)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._retry_interval = retry_interval
        self._clock = clock or SystemClock()
        self._outage_started: float | None = None
        self._skip_storage_until = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: SecuritySettings,
        redis_url: str | None = None,
        *,
        health_per_ip: str | None = None,
    ) -> RateLimiter:
        """A limiter with the configured limits, shared through Redis when a URL is given."""
        return cls(
            settings.rate_limit_per_ip,
            settings.rate_limit_per_user,
            health_per_ip=health_per_ip,
            storage_url=redis_url,
        )

    def instrument(self, telemetry: TelemetryClient, clock: Clock) -> None:
        """Record the limiter's Redis commands as dependencies (nothing to do in memory)."""
        storage = self._storage
        if isinstance(storage, RedisStorage) and isinstance(storage.bridge, RedispyBridge):
            instrument_redis(storage.bridge.storage, telemetry, clock=clock)

    def _open_storage(self, url: str | None, timeout: float) -> Storage:
        if url is None:
            return MemoryStorage()
        scheme, separator, rest = url.partition("://")
        scheme = scheme.removeprefix("async+")
        if not separator or scheme not in _LIMITS_SCHEMES:
            # Without the URL itself: it may carry a password.
            raise ValueError("rate limit storage must be a redis URL (redis, rediss or unix)")
        # Our own pool: its timeouts bound every call, it does not retry (a retry
        # would only double the wait during an outage), and aclose() can release it.
        # It blocks rather than refuses when all connections are busy: a burst must
        # queue for a connection, not fail open and so let itself through.
        self._pool = BlockingConnectionPool.from_url(
            f"{scheme}://{rest}",
            max_connections=_MAX_CONNECTIONS,
            timeout=_CONNECTION_WAIT,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        options: dict[str, Any] = {
            "implementation": "redispy",
            "connection_pool": self._pool,
            "wrap_exceptions": True,
        }
        storage = storage_from_string(f"{_LIMITS_SCHEMES[scheme]}://{rest}", **options)
        assert isinstance(storage, Storage)  # an async+ scheme gives an asyncio storage
        return storage

    async def check(self, client_ip: str, identity: str | None = None) -> RateLimitDecision:
        """Count one request and say whether it may proceed.

        The IP budget always applies; an authenticated request is also counted
        against its identity's budget, so one user cannot multiply its allowance
        by spreading over addresses, and nobody can mint fresh budgets by sending
        made-up credentials (the IP budget still holds). Never raises for storage
        trouble: see "fail open" in the module docs.
        """
        return await self._count(LimitScope.IP, client_ip, identity)

    async def check_health(self, client_ip: str) -> RateLimitDecision:
        """Count one request to a health endpoint against the health budget of ``client_ip``.

        Probes (load balancers, Kubernetes, uptime monitors) poll on their own
        schedule: they must not use up the budget of the API, nor be refused
        because the API's budget is used up, so they have a budget of their own
        and no per-identity one. Fails open like :meth:`check`.
        """
        if not self._limits[LimitScope.HEALTH]:
            return ALLOWED
        return await self._count(LimitScope.HEALTH, client_ip, None)

    async def _count(self, scope: LimitScope, key: str, identity: str | None) -> RateLimitDecision:
        if self._skip_storage_until and self._clock.monotonic() < self._skip_storage_until:
            return ALLOWED
        try:
            decision = await self._hit(scope, key)
            if decision.allowed and identity is not None:
                decision = await self._hit(LimitScope.USER, identity)
        except Exception as exc:  # fail open on anything the storage throws
            self._storage_failed(exc)
            return ALLOWED
        if self._outage_started is not None:
            self._storage_recovered()
        return decision

    async def _hit(self, scope: LimitScope, key: str) -> RateLimitDecision:
        for item in self._limits[scope]:
            if not await self._limiter.hit(item, _NAMESPACE, scope, key):
                stats = await self._limiter.get_window_stats(item, _NAMESPACE, scope, key)
                # limits keeps wall-clock timestamps, so the wait is measured on that clock.
                wait = math.ceil(stats.reset_time - time.time())
                retry_after = min(max(wait, 1), math.ceil(item.get_expiry()))
                return RateLimitDecision(False, retry_after, scope, str(item))
        return ALLOWED

    def _storage_failed(self, exc: Exception) -> None:
        now = self._clock.monotonic()
        self._skip_storage_until = now + self._retry_interval
        if self._outage_started is None:
            self._outage_started = now
            log.warning(
                "rate_limit_storage_unavailable",
                # limits wraps the driver's error; its type says more (TimeoutError, ...)
                error=type(exc.storage_error if isinstance(exc, StorageError) else exc).__name__,
                detail=str(exc)[:200],
                action="allowing requests unlimited until the storage answers again",
            )

    def _storage_recovered(self) -> None:
        assert self._outage_started is not None
        log.info(
            "rate_limit_storage_recovered",
            outage_seconds=round(self._clock.monotonic() - self._outage_started, 3),
        )
        self._outage_started = None
        self._skip_storage_until = 0.0

    async def reset(self) -> None:
        """Forget every count (tests and operators clearing a mistaken ban)."""
        await self._storage.reset()

    async def aclose(self) -> None:
        """Release the Redis connections, if any. Safe to call more than once."""
        if self._pool is not None:
            await self._pool.aclose()
