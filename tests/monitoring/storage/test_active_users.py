"""Active-user sketches in the store: upserted per minute and instance, read back by range,
deleted with the minute buckets."""

from __future__ import annotations

import random

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


async def _fill_users(store: TelemetryStore, start: float, minutes: int) -> dict[float, set[str]]:
    """Users on two instances over ``minutes`` from ``start``: the users of each minute."""
    rng = random.Random(5)
    seen: dict[float, set[str]] = {}
    for instance in ("one", "two"):
        users = ActiveUsers(10 * DAY)
        for index in range(minutes):
            minute = start + 60 * index
            for _ in range(rng.randint(0, 4)):
                user = f"user-{rng.randint(1, 60)}"
                users.add(user, minute + rng.uniform(0, 59))
                seen.setdefault(minute, set()).add(user)
        await store.write(TelemetryBatch(users=users.take_dirty(), instance=instance))
    return seen


async def test_rolled_up_periods_count_what_their_minutes_count(store: TelemetryStore) -> None:
    seen = await _fill_users(store, T0, 120)
    windows = [(T0 + a, T0 + b) for a, b in [(0, 7200), (130, 6930), (300, 600), (310, 590),
                                             (0, 60), (3000, 3600.5), (7000, 9000)]]  # fmt: skip
    before = {w: await store.query.active_user_sketches(*w) for w in windows}

    report = await compact(store, T0 + 7200 + 60, RetentionSettings())

    assert report.user_periods == 24  # every period of the two hours, both instances in one
    again = await compact(store, T0 + 7200 + 60, RetentionSettings())
    assert again.user_periods == 0
    for start, end in windows:
        found = await store.query.active_user_sketches(start, end)
        users = set().union(*(u for minute, u in seen.items() if start <= minute < end))
        assert count_distinct(data for _, data in found) == len(users), (start - T0, end - T0)
        assert count_distinct(data for _, data in before[start, end]) == len(users)
        # whole periods inside the window come as one sketch each, the rest as minutes
        whole = {p for p in range(0, 2 * 7200, 300) if start <= T0 + p and T0 + p + 300 <= end}
        expected = [m for m, _ in before[start, end] if (m - T0) // 300 * 300 not in whole]
        expected += [T0 + p for p in whole if any(T0 + p <= m < T0 + p + 300 for m in seen)]
        assert [first for first, _ in found] == sorted(expected)
    # one period's sketch is the union of its minutes on every instance
    [(first, data)] = await store.query.active_user_sketches(T0 + 600, T0 + 900)
    assert first == T0 + 600
    assert count_distinct([data]) == len(set().union(*(seen.get(T0 + m, set())
                                                       for m in range(600, 900, 60))))  # fmt: skip


async def test_periods_not_rolled_up_yet_are_read_as_minutes(store: TelemetryStore) -> None:
    seen = await _fill_users(store, T0, 60)
    await compact(store, T0 + 1200 + 60, RetentionSettings())  # periods up to 00:20 only
    found = await store.query.active_user_sketches(T0, T0 + 3600)
    assert [first for first, _ in found if first < T0 + 1200] == [T0 + 300 * k for k in range(4)]
    assert all(first % 60 == 0 for first, _ in found)
    assert count_distinct(data for _, data in found) == len(set().union(*seen.values()))


async def test_retention_deletes_periods_with_the_minutes(store: TelemetryStore) -> None:
    retention = RetentionSettings()
    old = T0 - (retention.buckets_1m_days + 1) * DAY
    await _fill_users(store, old, 10)
    await compact(store, old + DAY, retention)
    assert len(await store.query.active_user_sketches(old, old + 600)) == 2
    report = await compact(store, T0, retention)
    assert report.deleted_rollups == 2
    assert await store.query.active_user_sketches(old, old + 600) == []
