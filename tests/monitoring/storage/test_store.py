"""TelemetryStore: items of every kind round-trip, buckets upsert, series ids, failures."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digitalme.monitoring.storage import StoreWriteError, TelemetryStore, schema
from digitalme.monitoring.storage.errors import UnsupportedDatabase
from digitalme.monitoring.telemetry.context import TelemetryContext
from digitalme.monitoring.telemetry.items import (
    DependencyItem,
    EventItem,
    ExceptionItem,
    ItemKind,
    RequestItem,
    SecurityEventItem,
    Severity,
)
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from servers import find_free_port

T0 = 1_767_225_600.0
CONTEXT = TelemetryContext(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")
PROPS: dict[str, object] = {"RequestId": "r-1", "Nested": {"a": [1, 2.5, None]}, "Flag": True}


def _bucket(start: float, values: list[float], resolution: int = 10) -> Bucket:
    bucket = Bucket(start, resolution)
    for value in values:
        bucket.add(value)
    return bucket


async def test_every_item_kind_round_trips(store: TelemetryStore) -> None:
    batch = TelemetryBatch(
        instance="web-1",
        items=[
            RequestItem(
                time=T0 + 1, context=CONTEXT, properties=PROPS, weight=2.0,
                name="GET /api/personality/{id}", duration_ms=12.5, status_code=404,
                success=False,
            ),
            DependencyItem(
                time=T0 + 2, context=CONTEXT, type="HTTP", target="api.anthropic.com:443",
                name="POST /v1/messages", data="https://api.anthropic.com/v1/messages",
                duration_ms=812.0, success=True, result_code="200",
            ),
            ExceptionItem(
                time=T0 + 3, type="ValueError", message="bad [REDACTED]", stack="Traceback...",
                severity=Severity.CRITICAL,
            ),
            EventItem(time=T0 + 4, name="Profile.Created", measurements={"traits": 5.0}),
            SecurityEventItem(
                time=T0 + 5, event_type="SqlInjection", severity=Severity.CRITICAL,
                details="pattern matched", client_ip="203.0.113.9", user_id="42",
            ),
        ],
    )  # fmt: skip

    await store.write(batch)

    [request] = await store.query.recent(ItemKind.REQUEST, 10)
    assert request["ts"] == T0 + 1
    assert request["instance"] == "web-1"
    assert request["operation_id"] == CONTEXT.trace_id
    assert request["weight"] == 2.0
    assert request["name"] == "GET /api/personality/{id}"
    assert (request["duration_ms"], request["status_code"], request["success"]) == (
        12.5,
        404,
        False,
    )
    assert request["properties"] == PROPS
    [dependency] = await store.query.recent("dependency", 10)
    assert (dependency["type"], dependency["target"], dependency["result_code"]) == (
        "HTTP", "api.anthropic.com:443", "200"
    )  # fmt: skip
    assert dependency["success"] is True
    assert dependency["properties"] == {}
    [exception] = await store.query.recent(ItemKind.EXCEPTION, 10)
    assert (exception["type"], exception["severity"], exception["operation_id"]) == (
        "ValueError", "Critical", None
    )  # fmt: skip
    [event] = await store.query.recent(ItemKind.EVENT, 10)
    assert (event["name"], event["measurements"]) == ("Profile.Created", {"traits": 5.0})
    [security] = await store.query.recent(ItemKind.SECURITY_EVENT, 10)
    assert (security["event_type"], security["client_ip"], security["user_id"]) == (
        "SqlInjection", "203.0.113.9", "42"
    )  # fmt: skip


async def test_non_finite_and_odd_values_are_stored_as_json(store: TelemetryStore) -> None:
    item = EventItem(
        time=T0,
        name="Odd",
        measurements={"nan": math.nan, "inf": math.inf, "ok": 1.5},
        properties={"amount": Decimal("1.50"), "n": 3},
    )

    await store.write(TelemetryBatch(items=[item]))

    [event] = await store.query.recent(ItemKind.EVENT, 1)
    assert event["measurements"] == {"nan": None, "inf": None, "ok": 1.5}
    assert event["properties"] == {"amount": "1.50", "n": 3}


async def _bucket_rows(store: TelemetryStore) -> list[tuple[object, ...]]:
    table = schema.metric_buckets
    async with store.engine.connect() as connection:
        result = await connection.execute(
            select(table.c.resolution, table.c.start, table.c.instance, table.c.count, table.c.sum)
            .order_by(table.c.start, table.c.instance)
        )  # fmt: skip
        return [tuple(row) for row in result]


async def test_a_bucket_sent_again_replaces_the_stored_one(store: TelemetryStore) -> None:
    key = SeriesKey("Request.Duration", (("route", "GET /"),))

    await store.write(TelemetryBatch(buckets=[(key, _bucket(T0, [1, 2]))], instance="a"))
    await store.write(TelemetryBatch(buckets=[(key, _bucket(T0, [1, 2, 3, 4]))], instance="a"))
    await store.write(TelemetryBatch(buckets=[(key, _bucket(T0, [5]))], instance="b"))
    await store.write(TelemetryBatch(buckets=[(key, _bucket(T0 + 10, [7]))], instance="a"))

    assert await _bucket_rows(store) == [
        (10, T0, "a", 4, 10.0),
        (10, T0, "b", 1, 5.0),
        (10, T0 + 10, "a", 1, 7.0),
    ]
    [(_, merged)] = await store.query.metric_window("Request.Duration", T0, T0 + 10)
    assert (merged.count, merged.sum, merged.min, merged.max) == (5, 15.0, 1.0, 5.0)


async def test_empty_buckets_and_batches_write_nothing(store: TelemetryStore) -> None:
    await store.write(TelemetryBatch())
    await store.write(TelemetryBatch(buckets=[(SeriesKey("Empty"), Bucket(T0, 10))]))

    assert await _bucket_rows(store) == []
    assert await store.query.metric_names() == []


async def test_two_stores_creating_the_same_series_concurrently_agree(
    store: TelemetryStore, store_url: str
) -> None:
    keys = [SeriesKey("Race", (("n", str(n)),)) for n in range(50)]
    other = TelemetryStore(store_url)
    try:
        batches = [
            TelemetryBatch(buckets=[(key, _bucket(T0, [1.0])) for key in keys], instance=name)
            for name in ("a", "b")
        ]
        await asyncio.gather(store.write(batches[0]), other.write(batches[1]))
        ids_a = dict(await store.series_ids(keys))
        ids_b = dict(await other.series_ids(keys))
    finally:
        await other.close()

    assert ids_a == ids_b
    assert len(set(ids_a.values())) == len(keys)
    async with store.engine.connect() as connection:
        count = (
            await connection.execute(select(func.count()).select_from(schema.metric_series))
        ).scalar_one()
    assert count == len(keys)
    assert len(await _bucket_rows(store)) == 2 * len(keys)
    assert len(await store.query.series("Race")) == len(keys)


async def test_an_unreachable_sqlite_store_raises_a_transient_error(
    tmp_path: Path, settle_sqlite_threads: Callable[[], Awaitable[None]]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = TelemetryStore(f"sqlite+aiosqlite:///{blocker / 'telemetry.db'}")
    try:
        with pytest.raises(StoreWriteError) as caught:
            await store.write(TelemetryBatch(items=[EventItem(time=T0, name="x")]))
    finally:
        await store.close()
        await settle_sqlite_threads()

    assert caught.value.permanent is False


@pytest.mark.postgres
async def test_an_unreachable_postgres_store_raises_without_leaking_the_password() -> None:
    secret = "s3cret-Pa55word"
    url = f"postgresql+asyncpg://telemetry:{secret}@127.0.0.1:{find_free_port()}/telemetry"
    store = TelemetryStore(url)
    try:
        with pytest.raises(StoreWriteError) as caught:
            await store.write(TelemetryBatch(items=[EventItem(time=T0, name="x")]))
    finally:
        await store.close()

    assert caught.value.permanent is False
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)
    assert secret not in repr(store)


async def test_a_store_without_its_tables_raises(tmp_path: Path) -> None:
    store = TelemetryStore(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(StoreWriteError):
            await store.write(TelemetryBatch(items=[EventItem(time=T0, name="x")]))
    finally:
        await store.close()


async def test_items_that_cannot_become_rows_are_a_permanent_error(store: TelemetryStore) -> None:
    with pytest.raises(StoreWriteError) as caught:
        await store.write(TelemetryBatch(items=["not an item"]))  # type: ignore[list-item]

    assert caught.value.permanent is True


async def test_a_value_the_database_refuses_is_a_permanent_error(store: TelemetryStore) -> None:
    item = RequestItem(time=T0, name="GET /", duration_ms=1.0, status_code=2**70, success=True)

    with pytest.raises(StoreWriteError) as caught:
        await store.write(TelemetryBatch(items=[item]))

    if store.backend == "postgresql":  # SQLite stores any integer
        assert caught.value.permanent is True


async def test_batches_larger_than_one_statement_are_written_whole(
    store: TelemetryStore,
) -> None:
    # SQLite takes items in multi-row INSERTs of at most its parameter limit each:
    # 7,001 requests need more than one statement and end with a partial one.
    items = [
        RequestItem(
            time=T0 + n / 1000, context=CONTEXT, properties={"n": str(n)}, name="GET /x",
            duration_ms=float(n), status_code=200, success=True,
        )
        for n in range(7001)
    ]  # fmt: skip
    events = [EventItem(time=T0, name=f"e{n}") for n in range(3)]
    await store.write(TelemetryBatch(instance="web-1", items=[*items, *events]))
    async with store.engine.connect() as connection:
        count, total = (
            await connection.execute(select(func.count(), func.sum(schema.requests.c.duration_ms)))
        ).one()
        last = await connection.scalar(
            select(schema.requests.c.properties).where(schema.requests.c.duration_ms == 7000.0)
        )
        events_stored = await connection.scalar(select(func.count()).select_from(schema.events))
    assert count == 7001
    assert total == sum(range(7001))
    assert last == {"n": "7000"}
    assert events_stored == 3


async def test_an_in_memory_sqlite_store_is_refused() -> None:
    with pytest.raises(UnsupportedDatabase, match="needs a SQLite file"):
        TelemetryStore("sqlite+aiosqlite://")
