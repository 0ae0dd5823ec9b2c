"""Where processed telemetry goes: the embedded store and the optional exporters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from digitalme.monitoring.telemetry.items import AnyItem
from digitalme.monitoring.telemetry.sketch import Bucket


class SeriesKey(NamedTuple):
    """A metric series: its name and its dimensions, sorted by name.

    A named tuple rather than a dataclass: it is a dict key on every fold, and a
    tuple's hash and equality run in C.
    """

    name: str
    dimensions: tuple[tuple[str, str], ...] = ()

    def dims(self) -> dict[str, str]:
        return dict(self.dimensions)


@dataclass(slots=True)
class TelemetryBatch:
    """One flush: enriched, redacted and sampled items, and the metric buckets that changed.

    Buckets are cumulative: a bucket that is still filling is sent again, whole,
    each time it changes, so a sink upserts it by (series, resolution, start).
    """

    items: Sequence[AnyItem] = ()
    buckets: Sequence[tuple[SeriesKey, Bucket]] = field(default_factory=list)
    instance: str = ""
    users: Sequence[tuple[float, bytes]] = field(default_factory=list)
    """Active-user sketches that changed, ``(minute, serialized HLL)``, cumulative like
    buckets (:mod:`.users`); sinks without a use for them ignore them."""

    def __len__(self) -> int:
        return len(self.items) + len(self.buckets) + len(self.users)


class TelemetrySink(Protocol):
    """A destination for telemetry batches; slow or failing sinks never affect others.

    A sink bounds its own I/O (connect, request and statement timeouts): its worker
    does not cancel a write midway, so a write must end, by success or by raising.
    """

    name: str

    async def write(self, batch: TelemetryBatch) -> None:
        """Persist or export the batch; raise to have it retried later."""
        ...

    async def close(self) -> None:
        """Release connections; called once at shutdown after the last write."""
        ...
