"""The real-server test infrastructure itself: PostgreSQL and Redis fixtures."""

from __future__ import annotations

import socket

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from conftest_servers import missing_binary
from servers import PostgresServer, RedisServer, ServerBinaryNotFound, find_binary, find_free_port


def _asyncpg_dsn(sqlalchemy_url: str) -> str:
    """asyncpg.connect() wants postgresql://, SQLAlchemy wants postgresql+asyncpg://."""
    assert sqlalchemy_url.startswith("postgresql+asyncpg://")
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


# -- PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_select_one(postgres_url: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        assert await conn.fetchval("SELECT 1") == 1
        # Listening on TCP loopback, as the URL says.
        assert await conn.fetchval("SELECT host(inet_server_addr())") == "127.0.0.1"
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_create_insert_select(postgres_url: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        # A fresh database per test: nothing in it yet.
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
        await conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        await conn.executemany("INSERT INTO notes (body) VALUES ($1)", [("a",), ("b",), ("ü",)])
        rows = await conn.fetch("SELECT id, body FROM notes ORDER BY id")
        assert [(r["id"], r["body"]) for r in rows] == [(1, "a"), (2, "b"), (3, "ü")]
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_url_works_with_sqlalchemy(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x int)"))
            await conn.execute(text("INSERT INTO t VALUES (41), (1)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT sum(x) FROM t"))).scalar_one() == 42
    finally:
        await engine.dispose()


@pytest.mark.postgres
def test_postgres_url_shape(postgres_server: PostgresServer, postgres_url: str) -> None:
    assert postgres_server.is_running()
    assert postgres_url != postgres_server.url
    assert postgres_url.startswith(
        f"postgresql+asyncpg://{postgres_server.user}:{postgres_server.password}"
        f"@127.0.0.1:{postgres_server.port}/test_"
    )


# -- Redis --------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_set_get(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0  # FLUSHALL'ed by the fixture
        await client.set("greeting", "hello", ex=60)
        assert await client.get("greeting") == b"hello"
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_kill_and_restart_client_reconnects(
    isolated_redis_server: RedisServer,
) -> None:
    server = isolated_redis_server
    port = server.port
    # No retries/backoff so the outage surfaces immediately instead of after
    # redis-py's default exponential backoff.
    client = aioredis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))
    try:
        await client.set("k", "v")
        assert await client.get("k") == b"v"

        server.kill()
        assert not server.is_running()
        with pytest.raises(RedisConnectionError):
            await client.get("k")

        server.restart()
        assert server.is_running()
        assert server.port == port
        # Same client object, new connection; the dataset did not survive.
        assert await client.ping() is True
        assert await client.get("k") is None
        await client.set("k", "again")
        assert await client.get("k") == b"again"
    finally:
        await client.aclose()


@pytest.mark.redis
def test_redis_server_handle(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.ping()


# -- helpers (no servers needed) ----------------------------------------------


def test_find_free_port_is_bindable() -> None:
    port = find_free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_binary_raises_clear_error() -> None:
    with pytest.raises(ServerBinaryNotFound, match="no-such-server-binary") as info:
        find_binary("no-such-server-binary", ["/nonexistent/*/bin"])
    assert info.value.binary == "no-such-server-binary"


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="'initdb' not found"):
        missing_binary(ServerBinaryNotFound("initdb", ["/usr/lib/postgresql/*/bin"]))


def test_missing_binary_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*'redis-server' not found"):
        missing_binary(ServerBinaryNotFound("redis-server", []))
