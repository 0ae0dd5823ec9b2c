"""Delivery of batches to one sink, independent of every other sink.

Each sink has its own worker and bounded backlog: a sink that is down or slow
keeps its batches (up to the bound, dropping the oldest items and counting
them), logs once when an outage starts and once when it ends, retries with
capped backoff, and never delays the pipeline or the other sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque

import structlog

from digitalme.monitoring.telemetry.sinks import TelemetryBatch, TelemetrySink

log = structlog.get_logger("digitalme.telemetry")

MAX_BACKOFF = 30.0


class SinkWorker:
    """Writes batches to ``sink`` in order, retrying failures with backoff."""

    def __init__(
        self,
        sink: TelemetrySink,
        *,
        max_pending_items: int,
        max_batch_items: int = 20_000,
        first_backoff: float = 0.5,
    ) -> None:
        self.sink = sink
        self.max_pending_items = max_pending_items
        self.max_batch_items = max_batch_items
        self.first_backoff = first_backoff
        self._backlog: deque[TelemetryBatch] = deque()
        self._pending_items = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: TelemetryBatch | None = None
        self.failing = False
        self.written_items = 0
        self.dropped: Counter[str] = Counter()

    def offer(self, batch: TelemetryBatch) -> None:
        """Queue a batch; over the bound the oldest items go (their buckets move forward).

        Large batches are cut into chunks of ``max_batch_items``, so that one write (one
        transaction) stays bounded in size and time; fewer, larger chunks matter under
        load, since starting each write waits for a turn of a busy event loop.
        """
        if not len(batch):
            return
        items = batch.items
        size = self.max_batch_items
        for start in range(0, max(len(items), 1), size):
            chunk = TelemetryBatch(
                items=items[start : start + size],
                buckets=batch.buckets if start == 0 else [],
                instance=batch.instance,
                users=batch.users if start == 0 else [],
            )
            self._append(chunk)
        self._idle.clear()
        self._wake.set()

    def _append(self, batch: TelemetryBatch) -> None:
        self._backlog.append(batch)
        self._pending_items += len(batch.items)
        # The batch being written stays: dropping it too would count it twice.
        first = 1 if self._backlog[0] is self._in_flight else 0
        while self._pending_items > self.max_pending_items and len(self._backlog) > first + 1:
            oldest = self._backlog[first]
            del self._backlog[first]
            self._pending_items -= len(oldest.items)
            self.dropped[f"sink_backlog:{self.sink.name}"] += len(oldest.items)
            # Buckets and user sketches are cumulative: carry the latest state of each
            # forward, once (a long outage must not pile up copies of the same minute).
            successor = self._backlog[first]
            buckets = {(key, b.start): (key, b) for key, b in [*oldest.buckets, *successor.buckets]}
            successor.buckets = list(buckets.values())
            successor.users = list(dict([*oldest.users, *successor.users]).items())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"telemetry-sink-{self.sink.name}")

    async def _run(self) -> None:
        backoff = self.first_backoff
        while True:
            if not self._backlog:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._in_flight = self._backlog[0]
            try:
                # No timeout of ours around the write: cancelling a database write midway
                # can leave its connection holding a lock, and every retry then blocks.
                # Each sink bounds its own I/O (connect and statement timeouts).
                await self.sink.write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._in_flight = None
                if not self.failing:
                    self.failing = True
                    log.warning(
                        "telemetry_sink_down", sink=self.sink.name, error=type(exc).__name__
                    )
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            self._in_flight = None
            self._backlog.popleft()
            self._pending_items -= len(batch.items)
            self.written_items += len(batch.items)
            backoff = self.first_backoff
            if self.failing:
                self.failing = False
                log.info("telemetry_sink_recovered", sink=self.sink.name)

    async def flush(self, timeout: float) -> bool:
        """Wait until the backlog is written; False if it is not within ``timeout``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float) -> None:
        """Write what is left (bounded by ``timeout``), then close the sink."""
        if not await self.flush(timeout) and self._pending_items:
            self.dropped[f"shutdown:{self.sink.name}"] += self._pending_items
            log.error("telemetry_lost_at_shutdown", sink=self.sink.name, items=self._pending_items)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.sink.close()
        except Exception as exc:
            log.warning(
                "telemetry_sink_close_failed", sink=self.sink.name, error=type(exc).__name__
            )
