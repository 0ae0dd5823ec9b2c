"""Redis commands as dependencies, against a real Redis server: keys recorded, values never."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.context import (
    TelemetryContext,
    current_context,
    new_span_id,
    new_trace_id,
)
from digitalme.monitoring.telemetry.instrumentation.redis_client import (
    describe_command,
    instrument_redis,
)
from digitalme.monitoring.telemetry.items import DependencyItem
from digitalme.monitoring.testing import FakeClock

VALUE = "v4lue-that-must-never-be-recorded"


def dependencies(buffer: ItemBuffer) -> list[DependencyItem]:
    items = buffer.drain()
    assert all(isinstance(item, DependencyItem) for item in items), items
    return [item for item in items if isinstance(item, DependencyItem)]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    instance = aioredis.Redis.from_url(redis_url)
    try:
        yield instance
    finally:
        await instance.aclose()


def target(redis_url: str) -> str:
    return redis_url.removeprefix("redis://")  # host:port/db


@pytest.mark.redis
async def test_set_and_get_record_the_key_never_the_value(
    client: aioredis.Redis,
    redis_url: str,
    telemetry: TelemetryClient,
    clock: FakeClock,
    buffer: ItemBuffer,
) -> None:
    instrument_redis(client, telemetry, clock=clock)
    await client.set("session:42", VALUE, ex=60)
    assert await client.get("session:42") == VALUE.encode()

    set_item, get_item = dependencies(buffer)
    assert (set_item.type, set_item.name, set_item.data) == ("Redis", "SET", "SET session:42")
    assert (get_item.name, get_item.data) == ("GET", "GET session:42")
    for item in (set_item, get_item):
        assert item.target == target(redis_url)
        assert (item.success, item.result_code) == (True, "OK")
        assert 0 < item.duration_ms < 5000
        assert item.time == clock.time()
        assert VALUE not in repr(item)


@pytest.mark.redis
async def test_a_failing_command_records_the_error_type(
    client: aioredis.Redis, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    instrument_redis(client, telemetry)
    await client.set("name", VALUE)
    with pytest.raises(ResponseError):
        await client.incr("name")  # not an integer

    _, failed = dependencies(buffer)
    assert (failed.name, failed.data, failed.success, failed.result_code) == (
        "INCRBY",  # what redis-py sends for incr()
        "INCRBY name",
        False,
        "ResponseError",
    )


@pytest.mark.redis
async def test_values_in_any_position_stay_out(
    client: aioredis.Redis, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    instrument_redis(client, telemetry)
    await client.mset({"k1": VALUE, "k2": VALUE})
    await client.hset("user:1", mapping={"token": VALUE})
    await client.echo(VALUE)
    await client.publish("events", VALUE)
    await client.eval("return ARGV[1]", 1, "script-key", VALUE)

    items = dependencies(buffer)
    assert [item.data for item in items] == [
        "MSET k1",
        "HSET user:1",
        "ECHO",
        "PUBLISH events",
        "EVAL script-key",
    ]
    assert VALUE not in repr(items)


@pytest.mark.redis
async def test_a_pipeline_is_one_dependency_listing_its_keys(
    client: aioredis.Redis, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    instrument_redis(client, telemetry)
    async with client.pipeline() as pipe:
        pipe.set("a", VALUE)
        pipe.incr("counter")
        pipe.get("a")
        assert await pipe.execute() == [True, 1, VALUE.encode()]
    async with client.pipeline(transaction=False) as pipe:
        for n in range(12):
            pipe.get(f"key:{n}")
        await pipe.execute()

    transaction, pipeline = dependencies(buffer)
    assert (transaction.name, transaction.data) == ("MULTI", "MULTI SET a; INCRBY counter; GET a")
    assert pipeline.name == "PIPELINE"
    assert pipeline.data.endswith("GET key:9; +2 more")
    assert VALUE not in repr([transaction, pipeline])


@pytest.mark.redis
async def test_items_carry_the_request_context(
    client: aioredis.Redis, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    instrument_redis(client, telemetry)
    context = TelemetryContext(trace_id=new_trace_id(), span_id=new_span_id())
    token = current_context.set(context)
    try:
        await client.exists("x")
    finally:
        current_context.reset(token)

    [item] = dependencies(buffer)
    assert item.operation_id == context.trace_id


@pytest.mark.redis
async def test_installing_twice_records_once_and_remove_restores(
    client: aioredis.Redis, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    first = instrument_redis(client, telemetry)
    assert instrument_redis(client, telemetry) is first
    await client.ping()
    assert [item.name for item in dependencies(buffer)] == ["PING"]

    first.remove()
    await client.ping()
    assert buffer.drain() == []
    assert "execute_command" not in vars(client)


@pytest.mark.redis
async def test_the_rate_limiter_s_client_is_instrumented(
    redis_url: str, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    """The host's recipe: ``limits`` builds its own redis-py client; instrument that instance."""
    storage = storage_from_string(f"async+{redis_url}", implementation="redispy")
    assert isinstance(storage, RedisStorage)
    assert isinstance(storage.bridge, RedispyBridge)
    limits_client = storage.bridge.storage
    try:
        await limits_client.script_flush()  # other tests may have loaded the script already
        instrument_redis(limits_client, telemetry)
        limiter = MovingWindowRateLimiter(storage)
        assert await limiter.hit(parse("5/minute"), "digitalme-guard", "ip", "10.0.0.1")
    finally:
        await limits_client.aclose()

    # The moving window's Lua script: unknown to a fresh server, so loaded, then run.
    first, load, run = dependencies(buffer)
    assert (first.name, first.success, first.result_code) == ("EVALSHA", False, "NoScriptError")
    assert (load.data, load.success) == ("SCRIPT LOAD", True)  # the script's text stays out
    assert (run.name, run.success) == ("EVALSHA", True)
    assert run.data == "EVALSHA LIMITS:LIMITER/digitalme-guard/ip/10.0.0.1/5/1/minute"


async def test_a_refused_connection_is_a_failed_dependency(
    telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No retries: they would only make the test wait (the call is one dependency either way).
    client = aioredis.Redis(host="127.0.0.1", port=port, db=3, retry=Retry(NoBackoff(), 0))
    try:
        instrument_redis(client, telemetry)
        with pytest.raises(RedisConnectionError):
            await client.get("k")
    finally:
        await client.aclose()

    [item] = dependencies(buffer)
    assert (item.target, item.data, item.success, item.result_code) == (
        f"127.0.0.1:{port}/3",
        "GET k",
        False,
        "ConnectionError",
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("SET", "k", VALUE), ("SET", "SET k")),
        ((b"get", b"k"), ("GET", "GET k")),
        (("DEL", 42), ("DEL", "DEL 42")),
        (("AUTH", "user", VALUE), ("AUTH", "AUTH")),
        (("HELLO", 3, "AUTH", "user", VALUE), ("HELLO", "HELLO")),
        (("CONFIG SET", "requirepass", VALUE), ("CONFIG SET", "CONFIG SET")),
        (("ACL", "SETUSER", "bob", f">{VALUE}"), ("ACL", "ACL")),
        (("PING",), ("PING", "PING")),
        (("EVALSHA", "abc123", 0, VALUE), ("EVALSHA", "EVALSHA")),
        (("EVALSHA", "abc123", 2, "k1", "k2", VALUE), ("EVALSHA", "EVALSHA k1")),
        (("GET", "x" * 500), ("GET", "GET " + "x" * 200)),
        ((), ("", "")),
    ],
)
def test_describe_command(args: tuple[object, ...], expected: tuple[str, str]) -> None:
    assert describe_command(args) == expected
