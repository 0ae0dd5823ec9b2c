"""RateLimiter: moving-window budgets per IP and per identity, failing open on storage trouble."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from digitalme.host.guard.rate_limit import ALLOWED, LimitScope, RateLimiter
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import SecuritySettings


async def check_rate_limiter_against(redis_url: str | None) -> None:
    """The behaviour every storage must show; the Redis suite calls it with a live server.

    Uses keys of its own, so it can run against a shared Redis database.
    """
    limiter = RateLimiter("3/minute", "5/minute", storage_url=redis_url)
    try:
        await limiter.reset()
        ip, other_ip = "198.51.100.1", "198.51.100.2"
        results = [await limiter.check(ip) for _ in range(5)]
        assert [r.allowed for r in results] == [True, True, True, False, False]
        refused = results[-1]
        assert refused.scope is LimitScope.IP
        assert 1 <= refused.retry_after <= 60
        assert refused.limit == "3 per 1 minute"
        assert (await limiter.check(other_ip)).allowed

        # One identity shares its budget across addresses, each within its IP budget.
        addresses = [f"203.0.113.{n}" for n in range(1, 8)]
        outcomes = [await limiter.check(address, "user:42") for address in addresses]
        assert [o.allowed for o in outcomes] == [True] * 5 + [False] * 2
        assert outcomes[-1].scope is LimitScope.USER
        assert (await limiter.check(addresses[-1], "user:43")).allowed

        # A concurrent burst is counted exactly: it neither overshoots nor fails open.
        with capture_logs() as logs:
            burst = await asyncio.gather(*(limiter.check("198.51.100.3") for _ in range(300)))
        assert sum(decision.allowed for decision in burst) == 3
        assert logs == []
    finally:
        await limiter.reset()
        await limiter.aclose()


async def test_the_common_contract_holds_in_memory() -> None:
    await check_rate_limiter_against(None)


async def test_retry_after_is_whole_seconds_within_the_window() -> None:
    limiter = RateLimiter("2/second; 4/hour", "10/hour")
    first = [await limiter.check("192.0.2.1") for _ in range(3)]
    assert [d.allowed for d in first] == [True, True, False]
    assert first[-1].retry_after == 1
    assert first[-1].limit == "2 per 1 second"


async def test_every_limit_of_a_combined_setting_applies() -> None:
    limiter = RateLimiter("100/second; 3/hour", "10/hour")
    decisions = [await limiter.check("192.0.2.1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].limit == "3 per 1 hour"
    assert 3500 < decisions[-1].retry_after <= 3600


async def test_an_anonymous_flood_does_not_spend_a_users_budget() -> None:
    limiter = RateLimiter("3/minute", "3/minute")
    for _ in range(5):
        await limiter.check("192.0.2.1")
    assert (await limiter.check("192.0.2.2", "user:1")).allowed


async def test_concurrent_requests_never_exceed_the_limit() -> None:
    limiter = RateLimiter("50/minute", "50/minute")
    decisions = await asyncio.gather(*(limiter.check("192.0.2.1") for _ in range(120)))
    assert sum(d.allowed for d in decisions) == 50


async def test_from_settings_uses_the_configured_limits() -> None:
    settings = SecuritySettings(rate_limit_per_ip="1/minute", rate_limit_per_user="2/minute")
    limiter = RateLimiter.from_settings(settings)
    assert (await limiter.check("192.0.2.1")).allowed
    assert not (await limiter.check("192.0.2.1")).allowed


@pytest.mark.parametrize(
    "url", ["memcached://localhost:11211", "memory://", "localhost:6379", "redis:/:s3cret@host"]
)
def test_only_redis_urls_are_accepted_and_a_bad_one_is_not_echoed(url: str) -> None:
    with pytest.raises(ValueError, match="redis URL") as refused:
        RateLimiter("1/minute", "1/minute", storage_url=url)
    assert url not in str(refused.value)


class ClosingServer:
    """A real TCP server that hangs up on every connection: a Redis that is not there."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hang_up, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"

    async def _hang_up(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()
        await writer.wait_closed()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def broken_redis() -> AsyncIterator[ClosingServer]:
    server = ClosingServer()
    await server.start()
    yield server
    await server.stop()


async def test_a_failing_storage_fails_open_and_logs_the_outage_once(
    broken_redis: ClosingServer,
) -> None:
    limiter = RateLimiter("1/minute", "1/minute", storage_url=broken_redis.url, retry_interval=0)
    try:
        with capture_logs() as logs:
            decisions = [await limiter.check("192.0.2.1", "user:1") for _ in range(5)]
    finally:
        await limiter.aclose()
    assert decisions == [ALLOWED] * 5
    assert broken_redis.connections == 5  # it kept asking, and each failure was allowed
    outages = [entry for entry in logs if entry["event"] == "rate_limit_storage_unavailable"]
    assert len(outages) == 1
    assert outages[0]["log_level"] == "warning"


async def test_after_a_failure_the_storage_is_left_alone_for_the_retry_interval(
    broken_redis: ClosingServer,
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        "1/minute", "1/minute", storage_url=broken_redis.url, retry_interval=5.0, clock=clock
    )
    try:
        with capture_logs() as logs:
            for _ in range(3):
                assert (await limiter.check("192.0.2.1")).allowed
            assert broken_redis.connections == 1
            clock.advance(5.5)
            assert (await limiter.check("192.0.2.1")).allowed
            assert broken_redis.connections == 2
    finally:
        await limiter.aclose()
    assert [entry["event"] for entry in logs] == ["rate_limit_storage_unavailable"]


@pytest.mark.redis
async def test_the_common_contract_holds_on_a_real_redis(redis_url: str) -> None:
    await check_rate_limiter_against(redis_url)


async def test_health_requests_have_a_budget_of_their_own() -> None:
    limiter = RateLimiter("2/minute", "5/minute", health_per_ip="3/minute")
    try:
        ip = "192.0.2.9"
        health = [await limiter.check_health(ip) for _ in range(4)]
        assert [d.allowed for d in health] == [True, True, True, False]
        assert health[-1].scope is LimitScope.HEALTH
        assert health[-1].limit == "3 per 1 minute"
        # The API budget of the same address is untouched, and spending it leaves health alone.
        assert [(await limiter.check(ip)).allowed for _ in range(3)] == [True, True, False]
        assert not (await limiter.check_health(ip)).allowed
        assert (await limiter.check_health("192.0.2.10")).allowed
    finally:
        await limiter.aclose()


async def test_no_health_limit_means_unlimited() -> None:
    limiter = RateLimiter("1/minute", "1/minute")
    decisions = [await limiter.check_health("192.0.2.11") for _ in range(50)]
    assert all(decision is ALLOWED for decision in decisions)
