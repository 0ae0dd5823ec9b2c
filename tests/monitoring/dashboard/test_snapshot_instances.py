"""The live hub's MetricsSnapshot with other instances: their requests, read from the store."""

from __future__ import annotations

import pytest

from digitalme.monitoring.cluster.remote import RemoteBuckets
from digitalme.monitoring.dashboard.hub_snapshot import LiveSnapshot
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.client import REQUEST_DURATION
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.testing import FakeClock
from servers import find_free_port


def key(status: int) -> SeriesKey:
    return SeriesKey(REQUEST_DURATION, (("route", "GET /x"), ("status_code", str(status))))


async def flush(store: TelemetryStore, instance: str, at: float, **values: list[float]) -> None:
    """What ``instance`` would write: its buckets of ``at`` by status code (``s200=[...]``)."""
    buckets = []
    for name, durations in values.items():
        bucket = Bucket(at - at % 10, 10)
        bucket.add_many(durations)
        buckets.append((key(int(name[1:])), bucket))
    await store.write(TelemetryBatch(buckets=buckets, instance=instance))


async def test_the_snapshot_adds_the_other_instances_requests(
    store: TelemetryStore, clock: FakeClock
) -> None:
    aggregator = Aggregator(SeriesRegistry(), bucket_seconds=10)
    remote = RemoteBuckets(
        store.engine, "a", resolution=10, window=70.0, clock=clock, names=[REQUEST_DURATION]
    )
    snapshot = LiveSnapshot(aggregator, interval=2.0, clock=clock, remote=remote)
    now = clock.time()
    await flush(store, "b", now - 30, s200=[900.0] * 6)  # before the hub: not in an interval
    await flush(store, "c", now - 90, s200=[1.0] * 50)  # older than the minute
    await store.write(  # another metric: not read
        TelemetryBatch(buckets=[(SeriesKey("other"), Bucket(now - now % 10, 10))], instance="b")
    )
    for _ in range(4):
        aggregator.observe(key(200), 10.0, now)
    await snapshot.refresh()
    first = snapshot.take()
    assert first["requests_1m"] == 4 + 6
    assert first["requests_per_second"] == 2.0  # the others' first read is no interval's
    assert first["instances"] == 2
    assert first["p95_ms_1m"] == pytest.approx(900.0, rel=0.02)

    clock.advance(2.0)
    await flush(store, "b", clock.time(), s200=[5.0] * 3, s503=[5.0, 5.0])
    await flush(store, "c", clock.time(), s200=[5.0])
    await snapshot.refresh()
    second = snapshot.take()
    assert second["requests_per_second"] == (3 + 2 + 1) / 2.0
    assert second["requests_1m"] == 4 + 6 + 6
    assert second["errors_1m"] == 2
    assert second["instances"] == 3
    assert second["requests_total"] == 4  # this instance's own, since it started

    clock.advance(2.0)
    second_bucket = Bucket(clock.time() - clock.time() % 10, 10)
    second_bucket.add_many([5.0] * 4)  # b's bucket grew by one request
    await store.write(TelemetryBatch(buckets=[(key(200), second_bucket)], instance="b"))
    await snapshot.refresh()
    assert snapshot.take()["requests_per_second"] == 0.5


async def test_a_store_that_fails_leaves_the_last_figures(
    store: TelemetryStore, clock: FakeClock
) -> None:
    remote = RemoteBuckets(store.engine, "a", resolution=10, window=70.0, clock=clock)
    snapshot = LiveSnapshot(Aggregator(SeriesRegistry()), interval=2.0, clock=clock, remote=remote)
    await flush(store, "b", clock.time(), s200=[1.0, 1.0])
    await snapshot.refresh()
    assert snapshot.take()["requests_1m"] == 2
    unreachable = create_engine(f"postgresql+asyncpg://nobody:pw@127.0.0.1:{find_free_port()}/x")
    remote.engine = unreachable
    try:
        await snapshot.refresh()  # logged once, not raised
    finally:
        await unreachable.dispose()
    assert snapshot.take()["requests_1m"] == 2
