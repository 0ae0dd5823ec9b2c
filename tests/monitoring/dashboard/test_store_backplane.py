"""The live hub's backplane through the telemetry store, on SQLite and PostgreSQL.

Two backplanes (instances ``a`` and ``b``) share one migrated store, as two
``serve --workers`` processes or two replicas would; the store goes away (a
renamed SQLite directory, a halted PostgreSQL server) and comes back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.dashboard.backplane import (
    CHECK_NAME,
    BackplaneState,
    BackplaneStatus,
    RedisBackplane,
    backplane_check,
    encode_envelope,
)
from digitalme.monitoring.dashboard.hub import Hub
from digitalme.monitoring.dashboard.hub_messages import Message
from digitalme.monitoring.dashboard.hub_snapshot import LiveSnapshot
from digitalme.monitoring.dashboard.store_backplane import (
    StoreBackplane,
    hub_backplane,
    store_backplane,
)
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.prober import HEALTH_CHANGED_TOPIC, HealthChange
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.storage.schema import hub_messages
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Settings
from polling import eventually
from servers import PostgresServer, find_free_port

DEADLINE = 10.0  # seconds: a bound for waiting, never a timing assertion
FAST: dict[str, Any] = {"poll_interval": 0.02, "initial_backoff": 0.02, "max_backoff": 0.2}


class Recorder:
    """The callbacks of one backplane: what it handed over and the states it reported."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.states: list[BackplaneState] = []

    def receive(self, message: Message) -> None:
        self.messages.append(message)

    def changed(self, state: BackplaneState) -> None:
        self.states.append(state)

    def subjects(self) -> list[object]:
        return [m.get("subject") for m in self.messages]


def health(subject: str) -> Message:
    return {"type": "HealthUpdate", "subject": subject}


@asynccontextmanager
async def pair(
    engine: AsyncEngine, clock: FakeClock, *, other: AsyncEngine | None = None, **options: Any
) -> AsyncIterator[tuple[tuple[StoreBackplane, Recorder], tuple[StoreBackplane, Recorder]]]:
    """Backplanes ``a`` (on ``engine``) and ``b`` (on ``other`` or the same), both connected."""
    members = []
    for name, on in (("a", engine), ("b", other or engine)):
        backplane = StoreBackplane(on, name, clock=clock, **{**FAST, **options})
        recorder = Recorder()
        backplane.start(recorder.receive, recorder.changed)
        members.append((backplane, recorder))
    try:
        await eventually(
            lambda: all(backplane.state.connected for backplane, _ in members),
            timeout=DEADLINE,
            what="both backplanes connected",
        )
        yield members[0], members[1]
    finally:
        for backplane, _ in members:
            await backplane.stop()


async def row_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(hub_messages))).scalar()
    return int(count or 0)


async def insert_rows(engine: AsyncEngine, *rows: dict[str, object]) -> None:
    async with engine.begin() as connection:
        for row in rows:
            await connection.execute(insert(hub_messages), row)


def row(clock: FakeClock, origin: str, body: str | bytes, **extra: object) -> dict[str, object]:
    text = body.decode() if isinstance(body, bytes) else body
    return {"at": clock.time(), "origin": origin, "body": text, **extra}


# -- messages ---------------------------------------------------------------------------


async def test_a_message_of_a_reaches_b_once_in_order_and_never_a(
    store: TelemetryStore, clock: FakeClock
) -> None:
    async with pair(store.engine, clock, grace=0.3) as ((a, on_a), (b, on_b)):
        for seq in range(5):
            a.publish(health(f"a{seq}"))
        b.publish(health("b0"))
        await eventually(lambda: len(on_b.messages) == 5, timeout=DEADLINE, what="b got a's")
        await eventually(lambda: len(on_a.messages) == 1, timeout=DEADLINE, what="a got b's")
        # Each read its own rows back (and ignored them): nothing more can come.
        await eventually(
            lambda: (a.state.echoes, b.state.echoes) == (5, 1), timeout=DEADLINE, what="echoes"
        )
        await eventually(lambda: len(b._seen) == 0, timeout=DEADLINE, what="b's window settled")
    assert on_b.subjects() == ["a0", "a1", "a2", "a3", "a4"]
    assert {m["instance"] for m in on_b.messages} == {"a"}
    assert on_a.messages == [{"type": "HealthUpdate", "subject": "b0", "instance": "b"}]
    assert (a.state.published, a.state.received, a.state.dropped) == (5, 1, 0)
    assert (b.state.published, b.state.received, b.state.invalid) == (1, 5, 0)
    assert a.errors == b.errors == 0
    assert [s.status for s in on_a.states] == [BackplaneStatus.CONNECTED]
    assert await row_count(store.engine) == 6


def make_hub(clock: FakeClock, backplane: StoreBackplane, bus: EventBus) -> Hub:
    return Hub(
        bus,
        clock=clock,
        snapshot=LiveSnapshot(Aggregator(SeriesRegistry()), interval=3600.0, clock=clock),
        redactor=Redactor(),
        heartbeat_interval=3600.0,
        strict=True,
        backplane=backplane,
        instance=backplane.instance,
    )


async def test_the_clients_of_hub_b_see_what_hub_a_translated(
    store: TelemetryStore, clock: FakeClock
) -> None:
    bus_a = EventBus()
    hub_a = make_hub(clock, StoreBackplane(store.engine, "a", clock=clock, **FAST), bus_a)
    hub_b = make_hub(clock, StoreBackplane(store.engine, "b", clock=clock, **FAST), EventBus())
    hubs = (hub_a, hub_b)
    for hub in hubs:
        hub.start()
    try:
        client = hub_b.connect()
        hub_b.admit(client)
        change = HealthChange(
            "database",
            HealthStatus.HEALTHY,
            HealthStatus.UNHEALTHY,
            datetime(2026, 1, 1, tzinfo=UTC),
            "down",
        )
        await eventually(
            lambda: all(
                hub.backplane is not None and hub.backplane.state.connected for hub in hubs
            ),
            timeout=DEADLINE,
            what="both connected",
        )
        bus_a.publish(HEALTH_CHANGED_TOPIC, change)
        received: list[Message] = []

        async def arrived() -> bool:
            while client.pending:
                message = await client.next()
                assert message is not None
                received.append(message)
            return any(m["type"] == "HealthUpdate" for m in received)

        await eventually(arrived, timeout=DEADLINE, what="the HealthUpdate on b")
        update = next(m for m in received if m["type"] == "HealthUpdate")
        assert update["instance"] == "a"
        assert update["subject"] == "database"
    finally:
        for hub in hubs:
            for one in tuple(hub.clients.values()):
                hub.disconnect(one)
            await hub.stop()
    assert hub_a.errors == hub_b.errors == 0


async def test_start_does_not_replay_old_rows(store: TelemetryStore, clock: FakeClock) -> None:
    await insert_rows(
        store.engine, row(clock, "x", encode_envelope("x", health("old"))), row(clock, "x", "{}")
    )
    async with pair(store.engine, clock) as ((a, _), (b, on_b)):
        a.publish(health("new"))
        await eventually(lambda: on_b.messages != [], timeout=DEADLINE, what="the new one")
        await eventually(lambda: a.state.echoes == 1, timeout=DEADLINE, what="a read past it")
    assert on_b.subjects() == ["new"]
    assert b.state.invalid == 0  # the old garbage was never read


async def test_invalid_and_oversize_rows_are_dropped_and_counted(
    store: TelemetryStore, clock: FakeClock
) -> None:
    async with pair(store.engine, clock) as ((a, on_a), (b, on_b)):
        garbage = [
            row(clock, "x", "not json"),
            row(clock, "x", '{"origin": "x"}'),
            row(clock, "x", encode_envelope("x", {"type": "Welcome", "groups": []})),
            row(clock, "x", encode_envelope("y", health("forged"))),  # not its origin
            row(clock, "x", "[" * 5000),
            row(clock, "x", encode_envelope("x", {"type": "HealthUpdate", "pad": "x" * 70000})),
        ]
        await insert_rows(
            store.engine, *garbage, row(clock, "x", encode_envelope("x", health("ok")))
        )
        await eventually(lambda: on_b.subjects() == ["ok"], timeout=DEADLINE, what="ok on b")
        await eventually(lambda: on_a.subjects() == ["ok"], timeout=DEADLINE, what="ok on a")
        assert on_b.messages[0]["instance"] == "x"
        for backplane in (a, b):
            assert backplane.state.invalid == len(garbage)
            assert backplane.state.connected
            assert backplane.state.failures == 0


async def test_rows_committed_out_of_id_order_are_delivered_once(
    store: TelemetryStore, clock: FakeClock
) -> None:
    """A later id visible first (concurrent writers on PostgreSQL): the earlier is not skipped."""
    async with pair(store.engine, clock, grace=0.3) as (_, (b, on_b)):
        base = b._high
        late, early = base + 1, base + 2

        def at(ident: int, subject: str) -> dict[str, object]:
            return row(clock, "x", encode_envelope("x", health(subject)), id=ident)

        await insert_rows(store.engine, at(early, "second"))
        await eventually(lambda: on_b.subjects() == ["second"], timeout=DEADLINE, what="second")
        await insert_rows(store.engine, at(late, "first"))  # commits after, with a lower id
        await eventually(lambda: len(on_b.messages) == 2, timeout=DEADLINE, what="first")
        await eventually(lambda: b._floor >= early, timeout=DEADLINE, what="window settled")
        await insert_rows(store.engine, at(early + 1, "third"))
        await eventually(lambda: len(on_b.messages) == 3, timeout=DEADLINE, what="third")
        await eventually(lambda: b._floor >= early + 1, timeout=DEADLINE, what="settled again")
    assert on_b.subjects() == ["second", "first", "third"]
    assert b.state.received == 3


async def test_concurrent_writers_lose_nothing_and_repeat_nothing(
    store: TelemetryStore, clock: FakeClock
) -> None:
    writers = [
        StoreBackplane(store.engine, f"w{n}", clock=clock, max_batch=7, **FAST) for n in range(3)
    ]
    async with pair(store.engine, clock, grace=0.5) as (_, (b, on_b)):
        for writer in writers:
            writer.start(lambda message: None, lambda state: None)
        try:
            for seq in range(100):
                for writer in writers:
                    writer.publish(health(f"{writer.instance}-{seq}"))
            await eventually(lambda: len(on_b.messages) >= 300, timeout=DEADLINE, what="all 300")
            await eventually(lambda: b._floor >= b._high, timeout=DEADLINE, what="b settled")
        finally:
            for writer in writers:
                await writer.stop()
    assert len(on_b.messages) == b.state.received == 300
    for writer in writers:
        mine = [m["subject"] for m in on_b.messages if m["instance"] == writer.instance]
        assert mine == [f"{writer.instance}-{seq}" for seq in range(100)]


async def test_a_full_queue_loses_the_oldest(store: TelemetryStore, clock: FakeClock) -> None:
    backplane = StoreBackplane(store.engine, "a", clock=clock, queue_size=3, **FAST)
    for seq in range(5):
        backplane.publish(health(f"s{seq}"))
    backplane.publish({"type": "HealthUpdate", "pad": "x" * 70000})  # too large
    backplane.publish({"type": "HealthUpdate", "at": object()})  # not JSON
    assert (backplane.state.queued, backplane.state.dropped) == (3, 4)
    backplane.start(lambda message: None, lambda state: None)
    try:
        await eventually(lambda: backplane.state.published == 3, timeout=DEADLINE, what="written")
    finally:
        await backplane.stop()
    async with store.engine.connect() as connection:
        bodies = (await connection.execute(select(hub_messages.c.body))).scalars().all()
    assert [json.loads(body)["message"]["subject"] for body in bodies] == ["s2", "s3", "s4"]


async def test_retention_deletes_old_rows(store: TelemetryStore, clock: FakeClock) -> None:
    backplane = StoreBackplane(
        store.engine, "a", clock=clock, retention=60.0, grace=1.0, prune_interval=0.05, **FAST
    )
    backplane.start(lambda message: None, lambda state: None)
    try:
        for seq in range(3):
            backplane.publish(health(f"old{seq}"))
        await eventually(lambda: backplane.state.published == 3, timeout=DEADLINE, what="written")
        assert await row_count(store.engine) == 3
        clock.advance(61)
        backplane.publish(health("fresh"))
        await eventually(lambda: backplane.pruned == 3, timeout=DEADLINE, what="old rows deleted")
        await eventually(lambda: backplane.state.published == 4, timeout=DEADLINE, what="fresh")
    finally:
        await backplane.stop()
    async with store.engine.connect() as connection:
        bodies = (await connection.execute(select(hub_messages.c.body))).scalars().all()
    assert [json.loads(body)["message"]["subject"] for body in bodies] == ["fresh"]


# -- outages ------------------------------------------------------------------------------


async def test_sqlite_store_lost_and_back(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{directory / 'telemetry.db'}"
    store = await TelemetryStore.open(url, clock=clock)
    engine_a, engine_b = create_engine(url), create_engine(url)
    try:
        async with pair(engine_a, clock, other=engine_b) as ((a, on_a), (_, on_b)):
            check = backplane_check(a)
            assert check.name == CHECK_NAME
            assert (await check.check()).status is HealthStatus.HEALTHY
            with structlog.testing.capture_logs() as logs:
                directory.rename(tmp_path / "away")  # open files stay usable; new ones fail
                await engine_a.dispose()
                await eventually(
                    lambda: a.state.status is BackplaneStatus.DISCONNECTED,
                    timeout=DEADLINE,
                    what="a disconnected",
                )
                result = await check.check()
                assert result.status is HealthStatus.DEGRADED
                assert "this instance's clients only" in result.description
                assert result.error == a.state.last_error is not None
                a.publish(health("during"))  # waits in the queue
                await eventually(lambda: a.state.failures >= 3, timeout=DEADLINE, what="retries")
                (tmp_path / "away").rename(directory)
                await eventually(lambda: a.state.connected, timeout=DEADLINE, what="a back")
            await eventually(lambda: on_b.subjects() == ["during"], timeout=DEADLINE, what="sent")
            assert (await check.check()).status is HealthStatus.HEALTHY
            assert a.state.reconnects == 1
            events = [e["event"] for e in logs if e["event"].startswith("hub_backplane")]
            assert events == ["hub_backplane_disconnected", "hub_backplane_reconnected"]
            assert [s.connected for s in on_a.states] == [True, False, True]
    finally:
        await engine_a.dispose()
        await engine_b.dispose()
        await store.close()


@pytest.mark.postgres
async def test_postgresql_store_lost_and_back(
    isolated_postgres_server: PostgresServer, clock: FakeClock
) -> None:
    server = isolated_postgres_server
    server.create_database("hub")
    store = await TelemetryStore.open(server.async_url("hub"), clock=clock)
    try:
        async with pair(store.engine, clock) as ((a, on_a), (b, on_b)):
            a.publish(health("before"))
            await eventually(lambda: on_b.subjects() == ["before"], timeout=DEADLINE, what="1st")
            with structlog.testing.capture_logs() as logs:
                server.halt()
                await eventually(
                    lambda: not a.state.connected and not b.state.connected,
                    timeout=DEADLINE,
                    what="both disconnected",
                )
                assert (await backplane_check(b).check()).status is HealthStatus.DEGRADED
                a.publish(health("during"))
                server.restart()
                await eventually(
                    lambda: a.state.connected and b.state.connected,
                    timeout=DEADLINE,
                    what="both back",
                )
            await eventually(lambda: len(on_b.messages) == 2, timeout=DEADLINE, what="2nd")
            events = [e["event"] for e in logs if e["event"].startswith("hub_backplane")]
            assert events.count("hub_backplane_disconnected") == 2
            assert events.count("hub_backplane_reconnected") == 2
        assert on_b.subjects() == ["before", "during"]
        assert on_a.messages == []
    finally:
        await store.close()


async def test_an_unreachable_store_never_shows_its_password(clock: FakeClock) -> None:
    url = f"postgresql+asyncpg://hub:s3cret-pw@127.0.0.1:{find_free_port()}/telemetry"
    engine = create_engine(url)
    backplane = StoreBackplane(engine, "a", clock=clock, **FAST)
    recorder = Recorder()
    try:
        with structlog.testing.capture_logs() as logs:
            backplane.start(recorder.receive, recorder.changed)
            for seq in range(5):
                backplane.publish(health(f"s{seq}"))  # never blocks
            await eventually(lambda: backplane.state.failures >= 3, timeout=DEADLINE, what="retry")
            result = await backplane_check(backplane).check()
            await backplane.stop()
    finally:
        await engine.dispose()
    assert result.status is HealthStatus.DEGRADED
    assert [state.status for state in recorder.states] == [BackplaneStatus.DISCONNECTED]
    assert backplane.state.queued == 5  # kept for when it comes back
    assert (
        result.data["target"]
        == backplane.target
        == f"postgresql:127.0.0.1:{engine.url.port}/telemetry"
    )
    shown = json.dumps([logs, result.description, dict(result.data), result.error], default=str)
    assert "s3cret-pw" not in shown
    assert "hub:" not in backplane.target
    assert [entry["event"] for entry in logs] == ["hub_backplane_disconnected"]


# -- wiring ----------------------------------------------------------------------------------


async def test_settings_and_deployment_choose_the_backplane(
    clock: FakeClock, tmp_path: Path
) -> None:
    sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    postgres = create_engine("postgresql+asyncpg://u:p@127.0.0.1:5/db")
    redis = "redis://127.0.0.1:6399/0"
    try:
        plain = Settings.model_validate({})
        off = Settings.model_validate({"cluster": {"backplane": False}})
        workers = Settings.model_validate({"server": {"workers": 3}})
        with_redis = Settings.model_validate({"connection_strings": {"redis": redis}})

        def choose(settings: Settings, engine: AsyncEngine | None, **kw: Any) -> object:
            return hub_backplane(settings, engine=engine, instance="a", clock=clock, **kw)

        assert isinstance(choose(with_redis, sqlite), RedisBackplane)
        assert choose(plain, sqlite) is None  # a lone process: nobody to talk to
        assert isinstance(choose(plain, sqlite, workers=2), StoreBackplane)
        assert isinstance(choose(workers, sqlite), StoreBackplane)
        assert isinstance(choose(plain, postgres), StoreBackplane)
        assert choose(off, postgres) is None
        assert choose(plain, None) is None
        assert store_backplane(off, engine=postgres, instance="a", clock=clock) is None
        chosen = store_backplane(plain, engine=sqlite, instance="a", clock=clock, poll_interval=1)
        assert isinstance(chosen, StoreBackplane)
        assert chosen.poll_interval == 1
        with pytest.raises(ValueError, match="instance"):
            StoreBackplane(sqlite, "", clock=clock)
        with pytest.raises(ValueError, match="retention"):
            StoreBackplane(sqlite, "a", clock=clock, retention=1.0, grace=2.0)
    finally:
        await sqlite.dispose()
        await postgres.dispose()
