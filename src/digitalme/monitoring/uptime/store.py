"""Uptime tables of the telemetry store (SQLite or PostgreSQL): heartbeats, buckets,
component state, incidents, maintenance windows and deployment markers.

A batch of heartbeats is written in one transaction (:meth:`UptimeStore.write`):
the raw heartbeats, what they add to each minute, hour and day bucket (counts
are added in SQL; the response-time sketch of a bucket is read, merged and
written back), the components' last state, and the incidents opened or closed.
The components' state (last heartbeat, open incident) is what a restarted
process continues from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, and_, delete, func, literal, or_, select, tuple_, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from digitalme.monitoring.storage import schema
from digitalme.monitoring.telemetry.sketch import Bucket, sketch_from_bytes, sketch_to_bytes
from digitalme.monitoring.uptime.coverage import BucketDelta
from digitalme.monitoring.uptime.deployments import Deployment
from digitalme.monitoring.uptime.maintenance import MaintenanceWindow, Recurrence
from digitalme.monitoring.uptime.model import BeatStatus, Heartbeat, Incident, Source, TimeState

__all__ = ["ComponentState", "Segment", "Totals", "UptimeStore", "UptimeWrite"]

_SECONDS = {
    TimeState.UP: "up_s",
    TimeState.DEGRADED: "degraded_s",
    TimeState.DOWN: "down_s",
    TimeState.UNKNOWN: "unknown_s",
    TimeState.MAINTENANCE: "maintenance_s",
}
_COUNTS = ("beats", "failed_beats", "duration_count", "duration_sum")
Segment = tuple[int, float, float]
"""``(level, first start, end)``: the buckets of ``level`` starting in ``[first, end)``."""


@dataclass(slots=True)
class ComponentState:
    """Where a component's heartbeats got to (what a restart continues from)."""

    first_at: float
    last_at: float
    last_status: BeatStatus
    interval: float
    incident: Incident | None = None


@dataclass(slots=True)
class UptimeWrite:
    """One transaction's worth: heartbeats, bucket deltas, new states, changed incidents."""

    source: Source
    heartbeats: list[Heartbeat] = field(default_factory=list)
    deltas: dict[tuple[str, int, float], BucketDelta] = field(default_factory=dict)
    states: dict[str, ComponentState] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)


@dataclass(slots=True)
class Totals:
    """Seconds per state and heartbeat counts summed over some buckets of one component."""

    up: float = 0.0
    degraded: float = 0.0
    down: float = 0.0
    unknown: float = 0.0
    maintenance: float = 0.0
    beats: int = 0
    failed_beats: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    duration_max: float | None = None

    def add(self, other: Totals) -> None:
        self.up += other.up
        self.degraded += other.degraded
        self.down += other.down
        self.unknown += other.unknown
        self.maintenance += other.maintenance
        self.beats += other.beats
        self.failed_beats += other.failed_beats
        self.duration_count += other.duration_count
        self.duration_sum += other.duration_sum
        if other.duration_max is not None:
            self.duration_max = max(self.duration_max or other.duration_max, other.duration_max)


def _totals(row: RowMapping) -> Totals:
    return Totals(
        up=float(row["up_s"] or 0.0),
        degraded=float(row["degraded_s"] or 0.0),
        down=float(row["down_s"] or 0.0),
        unknown=float(row["unknown_s"] or 0.0),
        maintenance=float(row["maintenance_s"] or 0.0),
        beats=int(row["beats"] or 0),
        failed_beats=int(row["failed_beats"] or 0),
        duration_count=int(row["duration_count"] or 0),
        duration_sum=float(row["duration_sum"] or 0.0),
        duration_max=None if row["duration_max"] is None else float(row["duration_max"]),
    )


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class UptimeStore:
    """The uptime tables, on the telemetry store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert: Any = (
            postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        )

    # -- heartbeats ------------------------------------------------------------------

    async def load_states(self, source: Source) -> dict[str, ComponentState]:
        components, incidents = schema.uptime_components, schema.uptime_incidents
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(components).where(components.c.source == str(source))
                )
            ).mappings()
            states = {
                row["component"]: (
                    ComponentState(
                        row["first_at"],
                        row["last_at"],
                        BeatStatus(row["last_status"]),
                        row["interval"],
                    ),
                    row["incident_id"],
                )
                for row in rows
            }
            open_ids = [incident_id for _, incident_id in states.values() if incident_id]
            found: dict[str, Incident] = {}
            if open_ids:
                result = await connection.execute(
                    select(incidents).where(incidents.c.id.in_(open_ids))
                )
                found = {row["id"]: _incident(row) for row in result.mappings()}
        out = {}
        for component, (state, incident_id) in states.items():
            state.incident = found.get(incident_id) if incident_id else None
            out[component] = state
        return out

    async def write(self, batch: UptimeWrite) -> None:
        source = str(batch.source)
        async with self.engine.begin() as connection:
            if batch.heartbeats:
                await connection.execute(
                    schema.uptime_heartbeats.insert(),
                    [
                        {
                            "component": beat.component,
                            "source": source,
                            "at": beat.at,
                            "status": str(beat.status),
                            "duration_ms": beat.duration_ms,
                            "interval": beat.interval,
                            "failing": list(beat.failing),
                            "message": beat.message,
                        }
                        for beat in batch.heartbeats
                    ],
                )
            if batch.deltas:
                await self._add_buckets(connection, source, batch.deltas)
            if batch.incidents:
                table = schema.uptime_incidents
                statement = self._insert(table)
                statement = statement.on_conflict_do_update(
                    index_elements=[table.c.id],
                    set_={
                        "ended_at": statement.excluded.ended_at,
                        "failing": statement.excluded.failing,
                        "description": statement.excluded.description,
                    },
                )
                await connection.execute(
                    statement, [_incident_row(i) for i in batch.incidents.values()]
                )
            if batch.states:
                table = schema.uptime_components
                statement = self._insert(table)
                statement = statement.on_conflict_do_update(
                    index_elements=[table.c.component, table.c.source],
                    set_={
                        name: statement.excluded[name]
                        for name in ("last_at", "last_status", "interval", "incident_id")
                    },
                )
                await connection.execute(
                    statement,
                    [
                        {
                            "component": component,
                            "source": source,
                            "first_at": state.first_at,
                            "last_at": state.last_at,
                            "last_status": str(state.last_status),
                            "interval": state.interval,
                            "incident_id": None if state.incident is None else state.incident.id,
                        }
                        for component, state in batch.states.items()
                    ],
                )

    async def _add_buckets(
        self,
        connection: AsyncConnection,
        source: str,
        deltas: Mapping[tuple[str, int, float], BucketDelta],
    ) -> None:
        table = schema.uptime_buckets
        keys = sorted(deltas)
        existing: dict[tuple[str, int, float], RowMapping] = {}
        for chunk in _chunks(keys, 300):
            result = await connection.execute(
                select(table).where(
                    table.c.source == source,
                    tuple_(table.c.component, table.c.level, table.c.start).in_(chunk),
                )
            )
            for found in result.mappings():
                existing[(found["component"], found["level"], found["start"])] = found
        rows = []
        for key in keys:
            component, level, start = key
            delta = deltas[key]
            old = existing.get(key)
            row: dict[str, Any] = {
                "component": component,
                "source": source,
                "level": level,
                "start": start,
            }
            for state, column in _SECONDS.items():
                row[column] = (0.0 if old is None else old[column]) + delta.seconds.get(state, 0.0)
            row["beats"] = (0 if old is None else old["beats"]) + delta.beats
            row["failed_beats"] = (0 if old is None else old["failed_beats"]) + delta.failed_beats
            bucket = Bucket(start, level)
            if old is not None and old["duration_sketch"] is not None:
                bucket.sketch = sketch_from_bytes(old["duration_sketch"])
            bucket.add_many(delta.durations)
            count = (0 if old is None else old["duration_count"]) + len(delta.durations)
            row["duration_count"] = count
            row["duration_sum"] = (0.0 if old is None else old["duration_sum"]) + sum(
                delta.durations
            )
            maxima = [value for value in (old and old["duration_max"],) if value is not None]
            if delta.durations:
                maxima.append(max(delta.durations))
            row["duration_max"] = max(maxima) if maxima else None
            row["duration_sketch"] = sketch_to_bytes(bucket.sketch) if count else None
            rows.append(row)
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.component, table.c.source, table.c.level, table.c.start],
            set_={
                column.name: statement.excluded[column.name]
                for column in table.c
                if column.name not in ("component", "source", "level", "start")
            },
        )
        for chunk in _chunks(rows, 500):
            await connection.execute(statement, chunk)

    # -- reading ----------------------------------------------------------------------

    async def totals(
        self,
        source: Source,
        segments: Sequence[Segment],
        components: Sequence[str] | None = None,
    ) -> dict[str, Totals]:
        """Per component, the sums of the buckets in ``segments``."""
        return (await self.window_totals(source, {"": segments}, components)).get("", {})

    async def window_totals(
        self,
        source: Source,
        windows: Mapping[str, Sequence[Segment]],
        components: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Totals]]:
        """Per window name, per component, the sums of the buckets in its segments: one
        statement (a ``UNION ALL`` of one grouped sum per window), one round trip."""
        table = schema.uptime_buckets
        columns = [func.sum(table.c[name]).label(name) for name in (*_SECONDS.values(), *_COUNTS)]
        parts = []
        for name, segments in windows.items():
            if not segments:
                continue
            part = (
                select(
                    literal(name).label("window"),
                    table.c.component,
                    *columns,
                    func.max(table.c.duration_max).label("duration_max"),
                )
                .where(table.c.source == str(source), _in_segments(segments))
                .group_by(table.c.component)
            )
            if components is not None:
                part = part.where(table.c.component.in_(list(components)))
            parts.append(part)
        found: dict[str, dict[str, Totals]] = {name: {} for name in windows}
        if not parts:
            return found
        statement = parts[0] if len(parts) == 1 else union_all(*parts)
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            for row in result.mappings():
                found[row["window"]][row["component"]] = _totals(row)
        return found

    async def buckets(
        self,
        source: Source,
        component: str,
        segments: Sequence[Segment],
        *,
        sketches: bool = False,
    ) -> list[tuple[int, float, Totals, bytes | None]]:
        """The buckets of one component in ``segments``: ``(level, start, totals, sketch)``."""
        found = await self.buckets_of(source, [component], segments, sketches=sketches)
        return found.get(component, [])

    async def buckets_of(
        self,
        source: Source,
        components: Sequence[str],
        segments: Sequence[Segment],
        *,
        sketches: bool = False,
    ) -> dict[str, list[tuple[int, float, Totals, bytes | None]]]:
        """:meth:`buckets` of several components in one query, by component."""
        if not segments or not components:
            return {}
        table = schema.uptime_buckets
        wanted = [c for c in table.c if sketches or c.name != "duration_sketch"]
        statement = (
            select(*wanted)
            .where(
                table.c.source == str(source),
                table.c.component.in_(list(components)),
                _in_segments(segments),
            )
            .order_by(table.c.component, table.c.start, table.c.level)
        )
        found: dict[str, list[tuple[int, float, Totals, bytes | None]]] = {}
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            for row in result.mappings():
                found.setdefault(row["component"], []).append(
                    (row["level"], row["start"], _totals(row), row.get("duration_sketch"))
                )
        return found

    async def components(self, source: Source) -> dict[str, ComponentState]:
        """Every component this source has heartbeats of, with its last state."""
        return await self.load_states(source)

    async def heartbeats(
        self, source: Source, component: str, start: float, end: float, limit: int
    ) -> list[Heartbeat]:
        table = schema.uptime_heartbeats
        statement = (
            select(table)
            .where(
                table.c.source == str(source),
                table.c.component == component,
                table.c.at >= start,
                table.c.at < end,
            )
            .order_by(table.c.at.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [
                Heartbeat(
                    component=row["component"],
                    source=Source(row["source"]),
                    at=row["at"],
                    status=BeatStatus(row["status"]),
                    interval=row["interval"],
                    duration_ms=row["duration_ms"],
                    failing=tuple(row["failing"]),
                    message=row["message"],
                )
                for row in result.mappings()
            ]

    async def incidents(
        self,
        start: float,
        end: float,
        *,
        source: Source | None = None,
        component: str | None = None,
        limit: int = 1000,
    ) -> list[Incident]:
        """Incidents overlapping ``[start, end)``, newest first."""
        table = schema.uptime_incidents
        statement = (
            select(table)
            .where(
                table.c.started_at < end,
                or_(table.c.ended_at.is_(None), table.c.ended_at > start),
            )
            .order_by(table.c.started_at.desc())
            .limit(limit)
        )
        if source is not None:
            statement = statement.where(table.c.source == str(source))
        if component is not None:
            statement = statement.where(table.c.component == component)
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [_incident(row) for row in result.mappings()]

    # -- maintenance windows ------------------------------------------------------------

    async def maintenance_windows(self) -> list[MaintenanceWindow]:
        table = schema.maintenance_windows
        async with self.engine.connect() as connection:
            result = await connection.execute(select(table).order_by(table.c.starts_at))
            return [
                MaintenanceWindow(
                    id=row["id"],
                    title=row["title"],
                    components=list(row["components"]),
                    starts_at=_at(row["starts_at"]),
                    ends_at=_at(row["ends_at"]),
                    recurrence=None if row["recurrence"] is None else Recurrence(row["recurrence"]),
                    until=_dt(row["until"]),
                    created_by=row["created_by"],
                    created_at=_dt(row["created_at"]),
                )
                for row in result.mappings()
            ]

    async def save_maintenance(self, window: MaintenanceWindow) -> None:
        table = schema.maintenance_windows
        row = {
            "id": window.id,
            "title": window.title,
            "components": list(window.components),
            "starts_at": window.starts_at.timestamp(),
            "ends_at": window.ends_at.timestamp(),
            "recurrence": None if window.recurrence is None else str(window.recurrence),
            "until": None if window.until is None else window.until.timestamp(),
            "created_by": window.created_by,
            "created_at": (window.created_at or datetime.now(UTC)).timestamp(),
        }
        statement = self._insert(table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id], set_={k: v for k, v in row.items() if k != "id"}
        )
        async with self.engine.begin() as connection:
            await connection.execute(statement)

    async def delete_maintenance(self, window_id: str) -> bool:
        table = schema.maintenance_windows
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(table).where(table.c.id == window_id))
            return bool(result.rowcount)

    # -- deployments --------------------------------------------------------------------

    async def add_deployment(self, deployment: Deployment) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                schema.deployments.insert().values(
                    id=deployment.id,
                    version=deployment.version,
                    deployed_by=deployment.deployed_by,
                    at=deployment.at.timestamp(),
                    description=deployment.description,
                )
            )

    async def deployments(self, start: float, end: float, limit: int) -> list[Deployment]:
        table = schema.deployments
        statement = (
            select(table)
            .where(table.c.at >= start, table.c.at < end)
            .order_by(table.c.at.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [
                Deployment(
                    id=row["id"],
                    version=row["version"],
                    deployed_by=row["deployed_by"],
                    at=_at(row["at"]),
                    description=row["description"],
                )
                for row in result.mappings()
            ]

    async def delete_deployment(self, deployment_id: str) -> bool:
        table = schema.deployments
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(table).where(table.c.id == deployment_id))
            return bool(result.rowcount)

    # -- retention ----------------------------------------------------------------------

    async def delete_older(
        self, *, heartbeats: float, levels: Mapping[int, float], incidents: float
    ) -> int:
        """Delete heartbeats before ``heartbeats``, buckets of each level starting before
        its cut-off, and incidents that ended before ``incidents``; the rows deleted."""
        deleted = 0
        async with self.engine.begin() as connection:
            table = schema.uptime_heartbeats
            result = await connection.execute(delete(table).where(table.c.at < heartbeats))
            deleted += result.rowcount or 0
            buckets = schema.uptime_buckets
            for level, cutoff in levels.items():
                result = await connection.execute(
                    delete(buckets).where(buckets.c.level == level, buckets.c.start < cutoff)
                )
                deleted += result.rowcount or 0
            table = schema.uptime_incidents
            result = await connection.execute(
                delete(table).where(table.c.ended_at.is_not(None), table.c.ended_at < incidents)
            )
            deleted += result.rowcount or 0
        return deleted


def _in_segments(segments: Iterable[Segment]) -> Any:
    table = schema.uptime_buckets
    return or_(
        *(
            and_(table.c.level == level, table.c.start >= first, table.c.start < end)
            for level, first, end in segments
        )
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _incident(row: RowMapping) -> Incident:
    return Incident(
        id=row["id"],
        component=row["component"],
        source=Source(row["source"]),
        cause=row["cause"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        failing=list(row["failing"]),
        description=row["description"],
    )


def _incident_row(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "component": incident.component,
        "source": str(incident.source),
        "cause": incident.cause,
        "started_at": incident.started_at,
        "ended_at": incident.ended_at,
        "failing": list(incident.failing),
        "description": incident.description,
    }
