"""Active-user sketches in the store: upserted per minute and instance, read back by range,
deleted with the minute buckets."""

from __future__ import annotations

from digitalme.monitoring.storage import TelemetryStore, compact
from digitalme.monitoring.telemetry.sinks import TelemetryBatch
from digitalme.monitoring.telemetry.users import ActiveUsers, count_distinct
from digitalme.settings import RetentionSettings

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


async def test_sketches_are_upserted_per_minute_and_instance(store: TelemetryStore) -> None:
    one, two = ActiveUsers(3600), ActiveUsers(3600)
    one.add("ada", T0 + 5)
    await store.write(TelemetryBatch(users=one.take_dirty(), instance="one"))
    one.add("bob", T0 + 50)  # the same minute again, whole: replaces the stored sketch
    two.add("bob", T0 + 20)
    two.add("cy", T0 + 70)
    await store.write(TelemetryBatch(users=one.take_dirty(), instance="one"))
    await store.write(TelemetryBatch(users=two.take_dirty(), instance="two"))

    minutes = await store.query.active_user_sketches(T0, T0 + 120)
    assert [minute for minute, _ in minutes] == [T0, T0, T0 + 60]
    first = [data for minute, data in minutes if minute == T0]
    assert count_distinct(first) == 2  # ada and bob, bob seen by both instances
    assert count_distinct(data for _, data in minutes) == 3
    assert await store.query.active_user_sketches(T0 + 60, T0 + 61) == minutes[2:]


async def test_a_batch_repeating_a_minute_keeps_its_latest_sketch(store: TelemetryStore) -> None:
    users = ActiveUsers(3600)
    users.add("ada", T0)
    older = users.take_dirty()
    users.add("bob", T0 + 1)
    await store.write(TelemetryBatch(users=[*older, *users.take_dirty()], instance="one"))
    [(_, data)] = await store.query.active_user_sketches(T0, T0 + 60)
    assert count_distinct([data]) == 2


async def test_retention_deletes_minutes_with_the_minute_buckets(store: TelemetryStore) -> None:
    retention = RetentionSettings()
    users = ActiveUsers(10 * 365 * DAY)
    old = T0 - (retention.buckets_1m_days + 1) * DAY
    users.add("ada", old)
    users.add("bob", T0 - 60)
    await store.write(TelemetryBatch(users=users.take_dirty(), instance="one"))
    await compact(store, T0, retention)
    kept = await store.query.active_user_sketches(old - 60, T0)
    assert [minute for minute, _ in kept] == [T0 - 60]
