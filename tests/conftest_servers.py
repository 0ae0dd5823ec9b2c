"""pytest plugin: real PostgreSQL and Redis servers for the test suite.

Fixtures:

* ``postgres_server`` (session): a :class:`servers.PostgresServer`.
* ``postgres_url`` (function): async SQLAlchemy URL of a fresh, uniquely named
  database on the session server.
* ``redis_server`` (session): a :class:`servers.RedisServer`.
* ``redis_url`` (function): the session Redis URL, after FLUSHALL.
* ``isolated_redis_server`` (function): a private RedisServer, for tests that
  kill/restart Redis without disturbing the shared one.
* ``isolated_postgres_server`` (function): a private PostgresServer, for tests
  that halt/restart PostgreSQL without disturbing the shared one.

When a server binary is not installed the fixtures skip, except on CI
(``CI=true``), where a missing server is a failure rather than silent loss of
coverage.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import pytest
import redis

from servers import PostgresServer, RedisServer, ServerBinaryNotFound

_S = TypeVar("_S", PostgresServer, RedisServer)


def missing_binary(exc: ServerBinaryNotFound) -> NoReturn:
    """Fail on CI (CI=true), skip elsewhere, naming the missing binary."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so a missing server is an error: {exc}", pytrace=False)
    pytest.skip(str(exc))


def _start(factory: Callable[[], _S]) -> _S:
    try:
        server = factory()
    except ServerBinaryNotFound as exc:
        missing_binary(exc)
    return server.start()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _start(PostgresServer)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new empty database per test; returns its postgresql+asyncpg:// URL."""
    name = f"test_{uuid.uuid4().hex}"
    postgres_server.create_database(name)
    return postgres_server.async_url(name)


@pytest.fixture
def isolated_postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for this test only (safe to halt/restart)."""
    server = _start(PostgresServer)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = _start(RedisServer)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis server's URL, emptied with FLUSHALL first.

    A previous test may have killed the shared server; bring it back first.
    """
    if not redis_server.is_running():
        redis_server.restart()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def isolated_redis_server() -> Iterator[RedisServer]:
    """A private Redis server for this test only (safe to kill/restart)."""
    server = _start(RedisServer)
    try:
        yield server
    finally:
        server.stop()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def backend_url(request: pytest.FixtureRequest, sqlite_file: str) -> str:
    """For a fixture parametrized with BACKENDS: a SQLite URL or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{sqlite_file}"
    url: str = request.getfixturevalue("postgres_url")
    return url
