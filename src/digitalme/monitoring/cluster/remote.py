"""What the other instances recorded, read back from the shared store for the leader.

Each instance flushes its 10 s metric buckets and its items to the store every
``telemetry.flush_interval`` (labelled with its instance id). The leader's
alert engine evaluates its rules over its own live aggregates *plus* the other
instances' buckets (:class:`RemoteBuckets`, merged by :class:`MergedSource`:
each remote series is one more member of its group, so sketches merge and
counts add as they do for local series), and groups security events of every
instance (:class:`RemoteSecurityEvents`).

**Reading cheaply.** A poll reads the buckets that started in the last
``recent`` seconds (the ones still filling: a handful per series); every
``full_every`` seconds it reads the whole window, for an instance that flushed
late (its store write failed for a while). A row whose count and sum are
those already held is not decoded again. While no other instance has buckets
in the window (:attr:`RemoteBuckets.alone`), the leader polls once a second
(:data:`ALONE_INTERVAL`) instead: a lone instance then costs one small query a
second, and a new one is seen within a second of its first flush.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

from sqlalchemy import RowMapping, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from digitalme.monitoring.alerts.evaluation import LiveSource
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.storage import schema
from digitalme.monitoring.storage.merging import BucketMerger
from digitalme.monitoring.telemetry.client import (
    CRITICAL_SECURITY_TOPIC,
    CRITICAL_SECURITY_TYPES,
    SECURITY_TOPIC,
)
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity
from digitalme.monitoring.telemetry.sketch import Bucket

__all__ = ["ALONE_INTERVAL", "MergedSource", "RemoteBuckets", "RemoteSecurityEvents"]

RemoteKey = tuple[str, int]
"""``(instance, series id)``: a remote series' identity (never a local ``SeriesKey``)."""
Member = tuple[object, Mapping[str, str], Mapping[float, Bucket]]

ALONE_INTERVAL = 1.0
"""Seconds between the leader's polls while no other instance is seen."""
MAX_REMOTE_SERIES = 200_000
"""Remote series held at most (instances x series); past it new ones are left out (counted)."""


class RemoteBuckets:
    """The other instances' buckets of ``resolution`` over the last ``window`` seconds."""

    def __init__(
        self,
        engine: AsyncEngine,
        instance: str,
        *,
        resolution: int,
        window: float,
        clock: Clock,
        recent: float = 60.0,
        full_every: float = 60.0,
        names: Sequence[str] | None = None,
    ) -> None:
        self.engine = engine
        self.names = None if names is None else sorted(set(names))
        """Only these metrics' buckets (None: every metric's)."""
        self.instance = instance
        self.resolution = resolution
        self.window = window
        self.clock = clock
        self.recent = recent
        self.full_every = full_every
        self._names: dict[int, tuple[str, dict[str, str]]] = {}
        self._buckets: dict[RemoteKey, dict[float, Bucket]] = {}
        self._index: dict[str, list[Member]] = {}
        self._indexed = True
        self._last_full = -math.inf
        self.polls = 0
        self.decoded = 0
        self.left_out = 0

    def reset(self) -> None:
        """Forget everything (a new leadership reads the whole window again)."""
        self._buckets.clear()
        self._index.clear()
        self._indexed = True
        self._last_full = -math.inf

    @property
    def alone(self) -> bool:
        """No other instance has buckets in the window (as of the last poll)."""
        return not self._buckets

    @property
    def instances(self) -> set[str]:
        """The other instances with buckets in the window."""
        return {instance for instance, _ in self._buckets}

    async def refresh(self) -> None:
        """Read what changed since the last poll (raises the database's errors)."""
        now = self.clock.time()
        full = self.clock.monotonic() - self._last_full >= self.full_every
        since = now - (self.window + self.resolution if full else self.recent)
        table = schema.metric_buckets
        query = select(
            table.c.series_id,
            table.c.instance,
            table.c.start,
            table.c["count"],
            table.c["sum"],
            table.c["min"],
            table.c["max"],
            table.c.sketch,
        ).where(
            table.c.resolution == self.resolution,
            table.c.start >= since,
            table.c.instance != self.instance,
        )
        if self.names is not None:
            series = schema.metric_series
            named = select(series.c.id).where(series.c.name.in_(self.names))
            query = query.where(table.c.series_id.in_(named.scalar_subquery()))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
            unknown = {row["series_id"] for row in rows} - self._names.keys()
            if unknown:
                series = schema.metric_series
                found = await connection.execute(
                    select(series.c.id, series.c.name, series.c.dimensions).where(
                        series.c.id.in_(sorted(unknown))
                    )
                )
                for series_id, name, dims in found:
                    self._names[int(series_id)] = (
                        str(name),
                        {str(k): str(v) for k, v in dims.items()},
                    )
        if full:
            self._last_full = self.clock.monotonic()
        for row in rows:
            self._take(row)
        self._prune(now)
        self.polls += 1

    def _take(self, row: RowMapping) -> None:
        key: RemoteKey = (str(row["instance"]), int(row["series_id"]))
        if key[1] not in self._names:
            return  # its series row is not visible yet: next poll
        by_start = self._buckets.get(key)
        if by_start is None:
            if len(self._buckets) >= MAX_REMOTE_SERIES:
                self.left_out += 1
                return
            by_start = self._buckets[key] = {}
            self._indexed = False
        start = float(row["start"])
        held = by_start.get(start)
        if held is not None and held.count == row["count"] and held.sum == row["sum"]:
            return
        merger = BucketMerger()
        merger.add(row)
        by_start[start] = merger.bucket(start, self.resolution)
        self.decoded += 1

    def _prune(self, now: float) -> None:
        oldest = now - self.window - self.resolution
        for key in list(self._buckets):
            by_start = self._buckets[key]
            for start in [start for start in by_start if start < oldest]:
                del by_start[start]
            if not by_start:
                del self._buckets[key]
                self._indexed = False

    def series(self, name: str) -> Sequence[Member]:
        if not self._indexed:
            self._index = {}
            for key, by_start in self._buckets.items():
                series_name, dims = self._names[key[1]]
                self._index.setdefault(series_name, []).append((key, dims, by_start))
            self._indexed = True
        return self._index.get(name, ())


class MergedSource:
    """The engine's bucket source: the live aggregates and the other instances' buckets."""

    def __init__(self, local: LiveSource, remote: RemoteBuckets) -> None:
        if local.resolution != remote.resolution:
            raise ValueError("the local and remote buckets must have one resolution")
        self.resolution = local.resolution
        self.local = local
        self.remote = remote

    def refresh(self) -> None:
        self.local.refresh()

    def series(self, name: str) -> Sequence[Member]:
        remote = self.remote.series(name)
        local = self.local.series(name)
        return [*local, *remote] if remote else local

    def written(self, identity: object) -> int | None:
        return self.local.written(identity)  # None for a remote series


SECURITY_GRACE = 5.0
"""Seconds a poll looks back past the newest id seen: rows of concurrent writers may
commit out of id order."""
MAX_SECURITY_ROWS = 10_000


class RemoteSecurityEvents:
    """High and critical security events the other instances recorded, as bus messages.

    :meth:`begin` at each election: the first poll also reads this instance's own
    events of the ``catch_up`` seconds before it (nobody was listening for them),
    and every instance's from then on, own events excepted (they come on the bus).
    """

    def __init__(self, engine: AsyncEngine, instance: str, *, clock: Clock) -> None:
        self.engine = engine
        self.instance = instance
        self.clock = clock
        self._since = math.inf
        self._elected_at = math.inf
        self._after = 0  # ids at or below it were all read
        self._marks: deque[tuple[float, int]] = deque()
        self._seen: set[int] = set()
        self.read = 0

    def begin(self, catch_up: float) -> None:
        now = self.clock.time()
        self._elected_at = now
        self._since = now - catch_up
        self._after = 0
        self._marks.clear()
        self._seen.clear()

    async def poll(self) -> list[tuple[str, SecurityEventItem]]:
        """New events as ``(topic, item)`` pairs, the way the telemetry client publishes them."""
        if math.isinf(self._since):
            return []
        table = schema.security_events
        critical = table.c.event_type.in_(sorted(CRITICAL_SECURITY_TYPES))
        serious = table.c.severity.in_([str(Severity.HIGH), str(Severity.CRITICAL)])
        query = (
            select(
                table.c.id,
                table.c.ts,
                table.c.event_type,
                table.c.severity,
                table.c.details,
                table.c.client_ip,
            )
            .where(
                table.c.id > self._after,
                table.c.ts >= self._since,
                or_(critical, serious),
                or_(
                    table.c.instance != self.instance,
                    and_(table.c.instance == self.instance, table.c.ts < self._elected_at),
                ),
            )
            .order_by(table.c.id)
            .limit(MAX_SECURITY_ROWS)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        found: list[tuple[str, SecurityEventItem]] = []
        newest = self._after
        for row in rows:
            newest = max(newest, int(row.id))
            if row.id in self._seen:
                continue
            self._seen.add(int(row.id))
            item = SecurityEventItem(
                time=float(row.ts),
                event_type=str(row.event_type),
                severity=Severity(row.severity),
                details=str(row.details),
                client_ip=row.client_ip,
            )
            topic = (
                CRITICAL_SECURITY_TOPIC
                if item.event_type in CRITICAL_SECURITY_TYPES
                else SECURITY_TOPIC
            )
            found.append((topic, item))
        self.read += len(found)
        self._advance(newest)
        return found

    def _advance(self, newest: int) -> None:
        """Move ``after`` to the newest id seen at least :data:`SECURITY_GRACE` seconds ago."""
        now = self.clock.monotonic()
        self._marks.append((now, newest))
        while self._marks and now - self._marks[0][0] >= SECURITY_GRACE:
            _, mark = self._marks.popleft()
            self._after = max(self._after, mark)
        self._seen = {ident for ident in self._seen if ident > self._after}
