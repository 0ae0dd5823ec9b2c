"""In-memory doubles of the monitoring layer's pluggable parts, for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from digitalme.monitoring.telemetry.items import AnyItem
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket

ItemT = TypeVar("ItemT")


class FakeClock:
    """A clock that moves only when told to; tests advance it instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class InMemorySink:
    """A telemetry sink that keeps what it is given; ``failing`` makes writes raise."""

    name = "memory"

    def __init__(self) -> None:
        self.batches: list[TelemetryBatch] = []
        self.items: list[AnyItem] = []
        self.buckets: dict[tuple[SeriesKey, float], Bucket] = {}
        self.failing = False
        self.attempts = 0
        self.closed = False

    async def write(self, batch: TelemetryBatch) -> None:
        self.attempts += 1
        if self.failing:
            raise ConnectionError("in-memory sink told to fail")
        self.batches.append(batch)
        self.items.extend(batch.items)
        for key, bucket in batch.buckets:
            self.buckets[(key, bucket.start)] = bucket

    async def close(self) -> None:
        self.closed = True

    def of_kind(self, kind: type[ItemT]) -> list[ItemT]:
        return [item for item in self.items if isinstance(item, kind)]
