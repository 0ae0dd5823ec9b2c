"""The off-path pipeline: drain -> enrich -> redact -> aggregate -> sinks.

Items arrive sampled: the client records request and dependency durations in
their series and makes the sampling decision at capture (see
:mod:`~digitalme.monitoring.telemetry.client`). One asyncio task ticks every
``aggregation_tick`` (250 ms by default): it folds metric values into the live
aggregates (so alerting and the live view lag by at most one tick), enriches
and redacts the captured items, and hands batches to one
:class:`SinkWorker` per sink, items every ``flush_interval`` and changed metric
buckets at least every half second. Shutdown processes and writes everything left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import cast

import structlog

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.enrichment import Enricher
from digitalme.monitoring.telemetry.items import (
    AnyItem,
    DependencyItem,
    EventItem,
    ExceptionItem,
    SecurityEventItem,
)
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sink_worker import SinkWorker
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch, TelemetrySink
from digitalme.monitoring.telemetry.users import ActiveUsers

log = structlog.get_logger("digitalme.telemetry")

DROPPED = "telemetry.dropped"
PROCESSED = "telemetry.items"
MAX_BUCKET_LAG = 0.5
"""Seconds changed metric buckets wait at most for a write: with several instances the
leader evaluates the others' buckets from the store, so this bounds their share of the
alert latency (a few dozen small upserts a write; items keep ``flush_interval``)."""


class TelemetryPipeline:
    """Owns the buffer, the live aggregates and the sink workers."""

    def __init__(
        self,
        *,
        clock: Clock,
        buffer: ItemBuffer,
        registry: SeriesRegistry,
        aggregator: Aggregator,
        enricher: Enricher,
        redactor: Redactor,
        sinks: Sequence[TelemetrySink] = (),
        users: ActiveUsers | None = None,
        tick: float = 0.25,
        flush_interval: float = 1.0,
        instance: str = "",
    ) -> None:
        self.clock = clock
        self.buffer = buffer
        self.registry = registry
        self.aggregator = aggregator
        self.users = users
        self.enricher = enricher
        self.redactor = redactor
        self.tick = tick
        self.flush_interval = flush_interval
        self.instance = instance
        self.workers = [SinkWorker(sink, max_pending_items=buffer.capacity) for sink in sinks]
        self._outgoing: list[AnyItem] = []
        self._last_items_flush = -float("inf")
        self._last_buckets_flush = -float("inf")
        self._reported_drops: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self.internal_errors = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self._task = asyncio.create_task(self._loop(), name="telemetry-pipeline")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                self.process()
            except Exception:
                self.internal_errors += 1
                log.exception("telemetry_pipeline_error")

    async def flush(self, timeout: float = 10.0) -> bool:
        """Process everything captured so far and wait until every sink has it."""
        self.process(force=True)
        results = [await worker.flush(timeout) for worker in self.workers]
        return all(results)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking, process what is left and write it; bounded by ``timeout`` per sink."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.process(force=True)
        for worker in self.workers:
            await worker.stop(timeout)

    # -- one tick --------------------------------------------------------------

    def process(self, *, force: bool = False) -> None:
        """Run one tick now (the loop calls it; tests call it with a fake clock)."""
        now = self.clock.time()
        items = self.buffer.drain()  # sampled at capture: every item here is kept
        for item in items:
            self._prepare(item)
        self._outgoing.extend(items)
        self.aggregator.fold_pending(now)
        self._record_self_metrics(now, len(items))
        self.aggregator.prune(now)
        if self.users is not None:
            self.users.prune(now)
        send_items = force or now - self._last_items_flush >= self.flush_interval
        send_buckets = send_items or now - self._last_buckets_flush >= MAX_BUCKET_LAG
        if not send_buckets:
            return
        batch = TelemetryBatch(
            items=self._outgoing if send_items else [],
            buckets=self.aggregator.take_dirty(),
            instance=self.instance,
            users=self.users.take_dirty() if self.users is not None else [],
        )
        if send_items:
            self._outgoing = []
            self._last_items_flush = now
        self._last_buckets_flush = now
        for worker in self.workers:
            worker.offer(batch if len(self.workers) == 1 else _copy(batch))

    def _prepare(self, item: AnyItem) -> None:
        """Enrich and redact an item that is about to leave for the sinks."""
        properties: dict[str, object] = {}
        if item.properties:
            properties = cast(dict[str, object], self.redactor.redact_properties(item.properties))
        self.enricher.enrich(properties, item.context)
        item.properties = properties
        redact = self.redactor.redact_text
        if isinstance(item, DependencyItem):
            item.data = redact(item.data)
            item.name = redact(item.name)
        elif isinstance(item, ExceptionItem):
            item.message = redact(item.message)
            item.stack = redact(item.stack)
        elif isinstance(item, SecurityEventItem):
            item.details = redact(item.details)
        elif isinstance(item, EventItem):
            item.name = self.redactor.truncate(item.name)

    def _record_self_metrics(self, now: float, processed: int) -> None:
        if processed:
            self.aggregator.observe(SeriesKey(PROCESSED), float(processed), now)
        drops = Counter(self.buffer.dropped)
        for worker in self.workers:
            drops.update(worker.dropped)
        for reason, total in drops.items():
            new = total - self._reported_drops[reason]
            if new > 0:
                self.aggregator.observe(SeriesKey(DROPPED, (("reason", reason),)), new, now)
                self._reported_drops[reason] = total

    def dropped_total(self) -> int:
        return sum(self._reported_drops.values())


def _copy(batch: TelemetryBatch) -> TelemetryBatch:
    return TelemetryBatch(
        items=list(batch.items),
        buckets=list(batch.buckets),
        instance=batch.instance,
        users=list(batch.users),
    )
