"""Uptime over a window, read from the minute, hour and day buckets.

A window ``[start, end)`` is read as whole buckets, coarsest first
(:func:`plan`): the whole days inside it from day buckets, the whole hours at
its edges from hour buckets, the minutes left (including the current one) from
minute buckets. A 365-day window thus reads about 365 + 48 + 120 rows per
component. Its start is moved forward to the next minute, or, when it is older
than the minute buckets are kept, to the next hour (older than the hour buckets:
the next day), so no part of it falls in a bucket that was deleted.

Time not yet covered by a heartbeat is left out, except a heartbeat gap that is
still open: when the latest heartbeat is older than ``unknown_after_intervals``
probe intervals, the time since it is unknown (nobody is looking), minus any
maintenance. Uptime is ``(up + degraded) / (up + degraded + down [+ unknown])``,
unknown counting as down unless ``uptime.unknown`` is ``excluded``; maintenance
never counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.uptime.coverage import Span, without
from digitalme.monitoring.uptime.maintenance import MaintenanceCalendar
from digitalme.monitoring.uptime.model import Source, TimeState
from digitalme.monitoring.uptime.store import ComponentState, Segment, Totals, UptimeStore
from digitalme.settings import UptimeSettings

__all__ = ["STANDARD_WINDOWS", "UptimeReader", "WindowFigures", "plan"]

DAY, HOUR, MINUTE = 86400, 3600, 60
STANDARD_WINDOWS: dict[str, float] = {
    "1h": HOUR,
    "24h": DAY,
    "7d": 7 * DAY,
    "30d": 30 * DAY,
    "90d": 90 * DAY,
    "365d": 365 * DAY,
}


def plan(
    start: float, end: float, *, oldest_minute: float, oldest_hour: float
) -> tuple[float, list[Segment]]:
    """The window's actual start and the bucket segments that cover ``[start, end)``."""
    grain = MINUTE if start >= oldest_minute else HOUR if start >= oldest_hour else DAY
    first = math.ceil(start / grain) * grain
    last = math.ceil(end / MINUTE) * MINUTE
    segments: list[Segment] = []
    _fill(float(first), float(last), (DAY, HOUR, MINUTE), segments)
    return float(min(first, last)), sorted(segments, key=lambda s: s[1])


def _fill(a: float, b: float, levels: Sequence[int], out: list[Segment]) -> None:
    if a >= b:
        return
    level, finer = levels[0], levels[1:]
    if not finer:
        out.append((level, a, b))
        return
    first, last = math.ceil(a / level) * level, math.floor(b / level) * level
    if first < last:
        _fill(a, first, finer, out)
        out.append((level, float(first), float(last)))
        _fill(last, b, finer, out)
    else:
        _fill(a, b, finer, out)


@dataclass(slots=True)
class WindowFigures:
    """One component's figures over one window."""

    start: float
    end: float
    totals: Totals
    unknown_as_down: bool

    @property
    def bad(self) -> float:
        """Seconds counted against uptime: down, and unknown when it counts as down."""
        return self.totals.down + (self.totals.unknown if self.unknown_as_down else 0.0)

    @property
    def observed(self) -> float:
        """Seconds uptime is computed over (everything but maintenance and left-out time)."""
        return self.totals.up + self.totals.degraded + self.bad

    @property
    def uptime(self) -> float | None:
        """The fraction of observed time that was up (None when nothing was observed)."""
        observed = self.observed
        return (self.totals.up + self.totals.degraded) / observed if observed > 0 else None

    def to_dict(self) -> dict[str, Any]:
        totals = self.totals
        uptime = self.uptime
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "uptime_percent": None if uptime is None else round(uptime * 100.0, 4),
            "up_seconds": round(totals.up, 3),
            "degraded_seconds": round(totals.degraded, 3),
            "down_seconds": round(totals.down, 3),
            "unknown_seconds": round(totals.unknown, 3),
            "maintenance_seconds": round(totals.maintenance, 3),
            "heartbeats": totals.beats,
            "failed_heartbeats": totals.failed_beats,
            "response_ms": {
                "avg": (
                    round(totals.duration_sum / totals.duration_count, 3)
                    if totals.duration_count
                    else None
                ),
                "max": totals.duration_max,
            },
        }


class UptimeReader:
    """Reads uptime figures for windows ending now."""

    def __init__(
        self,
        store: UptimeStore,
        calendar: MaintenanceCalendar,
        settings: UptimeSettings,
        clock: Clock,
    ) -> None:
        self.store = store
        self.calendar = calendar
        self.settings = settings
        self.clock = clock
        self.unknown_as_down = settings.unknown == "down"

    def plan(self, start: float, end: float) -> tuple[float, list[Segment]]:
        retention = self.settings.retention
        return plan(
            start,
            end,
            oldest_minute=end - retention.minute_buckets_days * DAY + HOUR,
            oldest_hour=end - retention.hour_buckets_days * DAY + DAY,
        )

    async def figures(
        self,
        source: Source,
        seconds: float,
        *,
        components: Sequence[str] | None = None,
        states: dict[str, ComponentState] | None = None,
    ) -> dict[str, WindowFigures]:
        """Each component's figures over the last ``seconds``."""
        found = await self.windows(source, {"": seconds}, components=components, states=states)
        return found[""]

    async def windows(
        self,
        source: Source,
        windows: Mapping[str, float],
        *,
        components: Sequence[str] | None = None,
        states: dict[str, ComponentState] | None = None,
    ) -> dict[str, dict[str, WindowFigures]]:
        """Per window name, each component's figures over its last ``seconds`` (one query)."""
        now = self.clock.time()
        plans = {name: self.plan(now - seconds, now) for name, seconds in windows.items()}
        totals = await self.store.window_totals(
            source, {name: segments for name, (_, segments) in plans.items()}, components
        )
        if states is None:
            states = await self.store.load_states(source)
        out: dict[str, dict[str, WindowFigures]] = {}
        for name, (start, _) in plans.items():
            found = out[name] = {}
            for component, state in states.items():
                if components is not None and component not in components:
                    continue
                summed = totals[name].get(component, Totals())
                self.add_open_gap(summed, component, state, start, now)
                found[component] = WindowFigures(start, now, summed, self.unknown_as_down)
        return out

    async def standard(
        self,
        source: Source,
        components: Sequence[str] | None = None,
        states: dict[str, ComponentState] | None = None,
    ) -> dict[str, dict[str, WindowFigures]]:
        """Per component, its figures over each of :data:`STANDARD_WINDOWS`."""
        found = await self.windows(source, STANDARD_WINDOWS, components=components, states=states)
        out: dict[str, dict[str, WindowFigures]] = {}
        for name, by_component in found.items():
            for component, figures in by_component.items():
                out.setdefault(component, {})[name] = figures
        return out

    def add_open_gap(
        self, totals: Totals, component: str, state: ComponentState, start: float, now: float
    ) -> None:
        """Count the time since a heartbeat that is overdue as unknown (or maintenance)."""
        cap = self.settings.unknown_after_intervals * state.interval
        if now - state.last_at <= cap:
            return
        gap = Span(max(start, state.last_at), now, TimeState.UNKNOWN)
        if gap.end <= gap.start:
            return
        windows = self.calendar.occurrences(component, gap.start, gap.end)
        for span in without([gap], windows):
            if span.state is TimeState.MAINTENANCE:
                totals.maintenance += span.seconds
            else:
                totals.unknown += span.seconds


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()
