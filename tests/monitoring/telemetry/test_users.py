"""Active users: per-minute HyperLogLog sketches, their union, and what goes to the sinks."""

from __future__ import annotations

import pytest

from digitalme.monitoring.telemetry.items import EventItem
from digitalme.monitoring.telemetry.sink_worker import SinkWorker
from digitalme.monitoring.telemetry.sinks import TelemetryBatch
from digitalme.monitoring.telemetry.users import SLICE, ActiveUsers, count_distinct
from digitalme.monitoring.testing import InMemorySink

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a whole minute


def test_users_are_counted_per_minute_and_once_across_minutes() -> None:
    users = ActiveUsers(live_window=3600)
    for second in range(0, 180, 10):  # three minutes: ada every time, bob in the first two
        users.add("ada", T0 + second)
        if second < 120:
            users.add("bob", T0 + second)
    users.add("cy", T0 + 125)
    minutes = users.sketches(T0, T0 + 180)
    assert [minute for minute, _ in minutes] == [T0, T0 + 60, T0 + 120]
    assert [count_distinct([sketch]) for _, sketch in minutes] == [2, 2, 2]
    assert count_distinct(sketch for _, sketch in minutes) == 3
    # a minute belongs to a range when its start does
    assert [m for m, _ in users.sketches(T0 + 30, T0 + 120)] == [T0 + 60]
    assert count_distinct([]) == 0


def test_only_changed_minutes_are_taken_and_sent_ones_are_pruned() -> None:
    users = ActiveUsers(live_window=120)
    users.add("ada", T0)
    users.add("bob", T0 + 61)
    first = users.take_dirty()
    assert [minute for minute, _ in first] == [T0, T0 + 60]
    assert users.take_dirty() == []
    users.add("cy", T0 + 62)
    [(minute, data)] = users.take_dirty()
    assert minute == T0 + 60
    assert count_distinct([data]) == 2  # whole: the minute's sketch, not the change
    users.add("dee", T0 + 600)  # not taken yet
    users.prune(T0 + 600)  # the live window starts at T0 + 480
    assert [m for m, _ in users.sketches(0, T0 + 10_000)] == [T0 + 600]
    assert [m for m, _ in users.take_dirty()] == [T0 + 600]


def test_instances_seeing_the_same_user_count_it_once() -> None:
    one, two = ActiveUsers(3600), ActiveUsers(3600)
    for index in range(50):
        one.add(f"user-{index}", T0)
        two.add(f"user-{index + 25}", T0 + 30)  # 25 users seen by both
    sketches = [data for _, data in one.take_dirty() + two.take_dirty()]
    assert count_distinct(sketches) == 75


def test_many_users_are_estimated_within_the_sketch_error() -> None:
    users = ActiveUsers(86_400)
    for index in range(20_000):
        users.add(f"user-{index}", T0 + (index % 1440) * SLICE)  # a day of minutes
    sketches = [data for _, data in users.take_dirty()]
    assert len(sketches) == 1440
    # 3 standard deviations of the lg_k=12 sketch (1.6 % each)
    assert count_distinct(sketches) == pytest.approx(20_000, rel=0.05)


async def test_a_dropped_batch_carries_its_sketches_to_the_next() -> None:
    sink = InMemorySink()
    worker = SinkWorker(sink, max_pending_items=1)
    old, new = ActiveUsers(3600), ActiveUsers(3600)
    old.add("ada", T0)
    new.add("bob", T0 + 60)

    def item() -> EventItem:
        return EventItem(time=T0, name="e")

    worker.offer(TelemetryBatch(items=[item()], users=old.take_dirty()))
    worker.offer(TelemetryBatch(items=[item()], users=new.take_dirty()))  # drops the first
    assert worker.dropped
    worker.start()
    assert await worker.flush(5)
    [batch] = sink.batches
    assert [minute for minute, _ in batch.users] == [T0, T0 + 60]
    await worker.stop(5)
