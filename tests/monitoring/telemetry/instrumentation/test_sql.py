"""SQLAlchemy statements as dependencies and Database.Query.* metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.context import (
    TelemetryContext,
    current_context,
    new_span_id,
    new_trace_id,
)
from digitalme.monitoring.telemetry.instrumentation.sql import (
    QUERY_COUNT_METRIC,
    QUERY_DURATION_METRIC,
    QUERY_FAILED_EVENT,
    describe_statement,
    instrument_engine,
)
from digitalme.monitoring.telemetry.items import AnyItem, DependencyItem, EventItem
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock

SECRETS = ("s3cr3t-email@example.com", "s3cr3t-token-value", "s3cr3t-updated-value")

metadata = sa.MetaData()
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("token", sa.String(200)),
)

Dimensions = tuple[tuple[str, str], ...]


def dependencies(items: list[AnyItem]) -> list[DependencyItem]:
    return [item for item in items if isinstance(item, DependencyItem)]


def metric(registry: SeriesRegistry, name: str) -> dict[Dimensions, list[float]]:
    """Pending values per dimension set of one metric (what the pipeline would fold)."""
    return {
        series.key.dimensions: list(series.pending)
        for series in registry.all()
        if series.key.name == name and series.pending
    }


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    created = create_async_engine(url)
    async with created.begin() as conn:  # before instrumenting: the tests count from zero
        await conn.run_sync(metadata.create_all)
    yield created
    await created.dispose()


@pytest.fixture
def database(engine: AsyncEngine) -> str:
    """The target the items should name: dialect and database name only."""
    name = engine.url.database or ""
    if engine.dialect.name == "sqlite":
        name = Path(name).name
    return f"{engine.dialect.name}/{name}"


async def test_statements_are_dependencies_named_by_kind_and_table(
    engine: AsyncEngine,
    telemetry: TelemetryClient,
    clock: FakeClock,
    buffer: ItemBuffer,
    database: str,
) -> None:
    instrument_engine(engine, telemetry, clock)
    async with engine.begin() as conn:
        await conn.execute(users.insert().values(id=1, email=SECRETS[0], token=SECRETS[1]))
        row = (await conn.execute(sa.select(users).where(users.c.email == SECRETS[0]))).one()
        await conn.execute(users.update().where(users.c.id == 1).values(token=SECRETS[2]))
        await conn.execute(users.delete().where(users.c.email == SECRETS[0]))
    assert row.token == SECRETS[1]

    items = dependencies(buffer.drain())
    assert [item.name for item in items] == [
        "INSERT users",
        "SELECT users",
        "UPDATE users",
        "DELETE users",
    ]
    for item in items:
        assert item.type == "SQL"
        assert item.target == database
        assert (item.success, item.result_code) == (True, "OK")
        assert item.duration_ms > 0
        assert item.time == pytest.approx(clock.time() - item.duration_ms / 1000)
    assert items[1].data.startswith("SELECT users.id, users.email, users.token")


async def test_no_parameter_value_appears_anywhere(
    engine: AsyncEngine,
    telemetry: TelemetryClient,
    clock: FakeClock,
    buffer: ItemBuffer,
    registry: SeriesRegistry,
) -> None:
    instrument_engine(engine, telemetry, clock)
    async with engine.begin() as conn:
        await conn.execute(users.insert(), [{"email": SECRETS[0], "token": SECRETS[1]}])
        await conn.execute(sa.select(users.c.id).where(users.c.token == SECRETS[1]))
        await conn.execute(users.update().values(token=SECRETS[2]))
    async with engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError):
            await conn.execute(users.insert(), [{"email": SECRETS[0], "token": SECRETS[1]}])
    # An inlined literal is not a bound parameter, but is blanked all the same.
    inlined = f"SELECT id FROM users WHERE token = '{SECRETS[2]}'"  # noqa: S608 (a constant)
    async with engine.connect() as conn:
        await conn.exec_driver_sql(inlined)

    recorded = repr(buffer.drain()) + repr([series.key for series in registry.all()])
    assert "SELECT id FROM users WHERE token = ?" in recorded
    for secret in SECRETS:
        assert secret not in recorded


async def test_query_metrics_have_type_table_and_success(
    engine: AsyncEngine, telemetry: TelemetryClient, clock: FakeClock, registry: SeriesRegistry
) -> None:
    instrument_engine(engine, telemetry, clock)
    async with engine.begin() as conn:
        await conn.execute(users.insert().values(email="a@example.com"))
        await conn.execute(users.insert().values(email="b@example.com"))
        await conn.execute(sa.select(users))
        await conn.execute(sa.select(sa.literal(1)))

    insert = (("QueryType", "INSERT"), ("Success", "true"), ("TableName", "users"))
    select = (("QueryType", "SELECT"), ("Success", "true"), ("TableName", "users"))
    no_table = (("QueryType", "SELECT"), ("Success", "true"))  # as the plan: no empty TableName
    counts = metric(registry, QUERY_COUNT_METRIC)
    assert counts == {insert: [1.0, 1.0], select: [1.0], no_table: [1.0]}
    durations = metric(registry, QUERY_DURATION_METRIC)
    assert set(durations) == set(counts)
    assert all(value > 0 for values in durations.values() for value in values)


async def test_a_failing_statement_records_success_false(
    engine: AsyncEngine,
    telemetry: TelemetryClient,
    clock: FakeClock,
    buffer: ItemBuffer,
    registry: SeriesRegistry,
) -> None:
    instrument_engine(engine, telemetry, clock)
    async with engine.connect() as conn:
        await conn.execute(users.insert().values(id=1, email="a@example.com"))
        with pytest.raises(sa.exc.IntegrityError):
            await conn.execute(users.insert().values(id=1, email="b@example.com"))
    with pytest.raises(sa.exc.DBAPIError):
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT * FROM no_such_table")

    items = buffer.drain()
    ok, duplicate, missing = dependencies(items)
    assert (ok.name, ok.success) == ("INSERT users", True)
    assert (duplicate.name, duplicate.success, duplicate.result_code) == (
        "INSERT users",
        False,
        "IntegrityError",
    )
    assert (missing.name, missing.success) == ("SELECT no_such_table", False)
    assert missing.result_code in ("OperationalError", "ProgrammingError")  # SQLite, PostgreSQL
    assert duplicate.duration_ms > 0

    failed_insert = (("QueryType", "INSERT"), ("Success", "false"), ("TableName", "users"))
    assert metric(registry, QUERY_COUNT_METRIC)[failed_insert] == [1.0]
    events = [item for item in items if isinstance(item, EventItem)]
    assert [(event.name, event.properties["TableName"]) for event in events] == [
        (QUERY_FAILED_EVENT, "users"),
        (QUERY_FAILED_EVENT, "no_such_table"),
    ]
    assert all(event.properties["Success"] == "false" for event in events)


async def test_items_carry_the_request_context(
    engine: AsyncEngine, telemetry: TelemetryClient, clock: FakeClock, buffer: ItemBuffer
) -> None:
    instrument_engine(engine, telemetry, clock)
    context = TelemetryContext(trace_id=new_trace_id(), span_id=new_span_id())
    token = current_context.set(context)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.select(users))
    finally:
        current_context.reset(token)

    [item] = dependencies(buffer.drain())
    assert item.operation_id == context.trace_id


@pytest.mark.postgres
async def test_the_target_never_holds_host_user_or_password(
    postgres_url: str, telemetry: TelemetryClient, clock: FakeClock, buffer: ItemBuffer
) -> None:
    url = make_url(postgres_url)
    engine = create_async_engine(url)
    try:
        instrumentation = instrument_engine(engine, telemetry, clock)
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()

    [item] = dependencies(buffer.drain())
    assert item.target == instrumentation.target == f"postgresql/{url.database}"
    for part in (url.host, url.username, url.password, str(url.port)):
        assert part
        assert part not in repr(item)


async def test_installing_twice_records_once_and_remove_stops(
    engine: AsyncEngine, telemetry: TelemetryClient, clock: FakeClock, buffer: ItemBuffer
) -> None:
    first = instrument_engine(engine, telemetry, clock)
    assert instrument_engine(engine.sync_engine, telemetry, clock) is first
    async with engine.connect() as conn:
        await conn.execute(sa.select(users))
    assert len(dependencies(buffer.drain())) == 1

    first.remove()
    async with engine.connect() as conn:
        await conn.execute(sa.select(users))
    assert buffer.drain() == []
    assert instrument_engine(engine, telemetry, clock) is not first  # installable again


async def test_the_statement_cache_is_bounded(
    engine: AsyncEngine, telemetry: TelemetryClient, clock: FakeClock
) -> None:
    instrumentation = instrument_engine(engine, telemetry, clock, max_cached_statements=3)
    async with engine.connect() as conn:
        for n in range(10):
            await conn.exec_driver_sql(f"SELECT {n} FROM users")  # noqa: S608 (an int)
        for _ in range(5):  # one statement in steady use: cached once
            await conn.execute(sa.select(users))
    assert instrumentation.cached_statements == 3


def test_a_sync_engine_is_instrumented(
    telemetry: TelemetryClient, clock: FakeClock, buffer: ItemBuffer, tmp_path: Path
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'sync.db'}")
    try:
        instrumentation = instrument_engine(engine, telemetry, clock)
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(users.insert().values(email="a@example.com"))
    finally:
        engine.dispose()

    items = dependencies(buffer.drain())
    assert instrumentation.target == "sqlite/sync.db"
    assert ("INSERT users", True) in [(item.name, item.success) for item in items]
    assert "CREATE users" in [item.name for item in items]


@pytest.mark.parametrize(
    ("statement", "name"),
    [
        ("SELECT users.id, users.email \nFROM users \nWHERE users.id = ?", "SELECT users"),
        ("select * from Profiles where id = $1", "SELECT Profiles"),
        ('SELECT "user".id FROM "user"', "SELECT user"),
        ("SELECT a.x FROM public.accounts AS a JOIN b ON a.id = b.id", "SELECT public.accounts"),
        ("SELECT count(*) AS n \nFROM (SELECT id FROM messages) AS anon_1", "SELECT messages"),
        ("SELECT 1", "SELECT"),
        (f"SELECT {', '.join(f't.c{n}' for n in range(60))} FROM wide", "SELECT wide"),  # noqa: S608
        ("INSERT INTO conversations (a, b) VALUES (?, ?) RETURNING id", "INSERT conversations"),
        ("UPDATE profiles SET name=$1 WHERE profiles.id = $2", "UPDATE profiles"),
        ("UPDATE OR REPLACE t SET a = 1", "UPDATE t"),
        ("DELETE FROM `sessions` WHERE id = %s", "DELETE sessions"),
        ("/* app */ -- why\n  SELECT * FROM audit", "SELECT audit"),
        ("WITH recent AS (SELECT 1) SELECT * FROM recent", "WITH recent"),
        ("CREATE TABLE IF NOT EXISTS alerts (id INTEGER)", "CREATE alerts"),
        ("DROP INDEX ix_alerts_time", "DROP ix_alerts_time"),
        ("TRUNCATE TABLE telemetry", "TRUNCATE telemetry"),
        ("PRAGMA foreign_keys = ON", "PRAGMA"),
        ("", "SQL"),
    ],
)
def test_statement_kind_and_table(statement: str, name: str) -> None:
    assert describe_statement(statement).name == name


def test_statement_data_blanks_literals_and_is_truncated() -> None:
    info = describe_statement("SELECT id FROM t WHERE a = 'it''s secret' AND b = ?")
    assert info.data == "SELECT id FROM t WHERE a = ? AND b = ?"
    long = describe_statement("SELECT 'x' FROM t WHERE note = '" + "y" * 5000 + "'")
    assert long.data.endswith("= ?…")
    assert len(long.data) <= 1001
    assert "y" not in long.data
