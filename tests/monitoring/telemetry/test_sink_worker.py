"""SinkWorker: a bounded backlog whose drops and writes add up to what was offered."""

from __future__ import annotations

import asyncio

from digitalme.monitoring.telemetry.items import EventItem
from digitalme.monitoring.telemetry.sink_worker import SinkWorker
from digitalme.monitoring.telemetry.sinks import TelemetryBatch
from digitalme.monitoring.testing import InMemorySink


class GatedSink(InMemorySink):
    """Holds each write until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()

    async def write(self, batch: TelemetryBatch) -> None:
        self.writing.set()
        await self.gate.wait()
        await super().write(batch)


def batch(start: int, size: int) -> TelemetryBatch:
    return TelemetryBatch(
        items=[EventItem(time=float(n), name=f"e{n}") for n in range(start, start + size)]
    )


async def test_the_batch_being_written_is_never_dropped_and_counts_add_up() -> None:
    sink = GatedSink()
    worker = SinkWorker(sink, max_pending_items=30)
    worker.start()
    try:
        worker.offer(batch(0, 10))
        await sink.writing.wait()  # the first batch is now in flight
        for start in range(10, 100, 10):
            worker.offer(batch(start, 10))
        sink.gate.set()
        assert await worker.flush(timeout=5)
    finally:
        await worker.stop(timeout=5)
    written = [item.time for item in sink.items]
    dropped = worker.dropped["sink_backlog:memory"]
    assert written[:10] == [float(n) for n in range(10)]  # the in-flight batch arrived whole
    assert len(written) + dropped == 100
    assert worker.written_items == len(written)
    assert written[-10:] == [float(n) for n in range(90, 100)]  # the newest are kept


async def test_large_batches_are_written_in_chunks_in_order() -> None:
    sink = InMemorySink()
    worker = SinkWorker(sink, max_pending_items=100_000, max_batch_items=300)
    worker.start()
    try:
        worker.offer(batch(0, 1000))
        assert await worker.flush(timeout=5)
    finally:
        await worker.stop(timeout=5)
    assert [len(b.items) for b in sink.batches] == [300, 300, 300, 100]
    assert [item.time for item in sink.items] == [float(n) for n in range(1000)]
