"""The public status document: what ``/status``, ``/api/status`` and the badge show
(:mod:`.status_page`), with no sign-in.

What is public: the configured title, each shown component under its public name
(``uptime.status_page.components``; empty: every check but ``overall`` and the
``hidden`` ones, under its own name), its state, its uptime over 24 hours, 7, 30
and 90 days, one bar per day for 90 days (UTC), the open incidents (component,
start and cause) and the maintenance windows running or starting within 7 days
(title, times and the shown components they cover). Nothing else leaves the
store: no heartbeat messages, failing-check lists, probe durations, hostnames,
URLs or error texts, and the HTML is rendered from the same public document as
the JSON, so it cannot show more.

A component's state comes from its last heartbeat: under maintenance when a
running window covers it, unknown when that heartbeat is older than
``uptime.unknown_after_intervals`` probe intervals, otherwise operational,
degraded or (down) major outage. The page's state is the worst of them: major
outage when every shown component is down, partial outage when some are,
then degraded, maintenance, unknown and operational.

The document is computed at most once per ``cache_seconds`` (on the monitor's
clock); concurrent requests share one computation. When the store fails the
routes answer 503 (``status_unavailable``) and the failure is logged once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.uptime.coverage import Span, split_at, without
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Source, TimeState
from digitalme.monitoring.uptime.service import UptimeMonitor
from digitalme.monitoring.uptime.store import ComponentState, Totals
from digitalme.monitoring.uptime.windows import DAY, WindowFigures
from digitalme.settings import StatusPageSettings

__all__ = [
    "DAYS",
    "ComponentView",
    "DayStatus",
    "DayView",
    "PageStatus",
    "StatusBuilder",
    "StatusCache",
    "StatusView",
]

DAYS = 90
"""Day bars per component (the last one is today, so far)."""
UPTIME_WINDOWS: dict[str, float] = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY}
BADGE_WINDOW = "30d"
UPCOMING = 7 * DAY
"""Maintenance windows starting within this many seconds are listed."""
MAX_COMPONENTS = 100
MAX_MAINTENANCE = 20


class PageStatus(StrEnum):
    """A component's or the whole page's state."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"


class DayStatus(StrEnum):
    """What one day's bar shows: the worst that happened in it."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"
    MAINTENANCE = "maintenance"
    NO_DATA = "no_data"


_OF_BEAT = {
    BeatStatus.UP: PageStatus.OPERATIONAL,
    BeatStatus.DEGRADED: PageStatus.DEGRADED,
    BeatStatus.DOWN: PageStatus.MAJOR_OUTAGE,
}
# For several checks under one public name: the worst one.
_COMPONENT_RANK = {
    PageStatus.OPERATIONAL: 0,
    PageStatus.MAINTENANCE: 1,
    PageStatus.DEGRADED: 2,
    PageStatus.UNKNOWN: 3,
    PageStatus.PARTIAL_OUTAGE: 4,
    PageStatus.MAJOR_OUTAGE: 5,
}
_DAY_RANK = {
    DayStatus.NO_DATA: 0,
    DayStatus.UP: 1,
    DayStatus.MAINTENANCE: 2,
    DayStatus.DEGRADED: 3,
    DayStatus.UNKNOWN: 4,
    DayStatus.DOWN: 5,
}


# -- the public document -------------------------------------------------------------------


@dataclass(slots=True)
class DayView:
    """One day's bar (not frozen: a page builds 90 per component, and a frozen dataclass
    costs several times as much to make; nothing changes a view once built)."""

    date: str
    uptime_percent: float | None
    down_seconds: float
    unknown_seconds: float
    maintenance_seconds: float
    status: DayStatus

    @property
    def rank(self) -> tuple[int, float]:
        return _DAY_RANK[self.status], -(
            100.0 if self.uptime_percent is None else self.uptime_percent
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "uptime_percent": self.uptime_percent,
            "down_seconds": self.down_seconds,
            "unknown_seconds": self.unknown_seconds,
            "maintenance_seconds": self.maintenance_seconds,
            "status": str(self.status),
        }


@dataclass(frozen=True, slots=True)
class ComponentView:
    """One shown component."""

    name: str
    status: PageStatus
    uptime: dict[str, float | None]
    days: list[DayView]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "uptime": dict(self.uptime),
            "days": [day.to_dict() for day in self.days],
        }


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the three routes show, computed once per cache period."""

    title: str
    status: PageStatus
    updated_at: datetime
    components: list[ComponentView]
    incidents: list[dict[str, str]] = field(default_factory=list)
    maintenance: list[dict[str, Any]] = field(default_factory=list)
    badge_percent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": str(self.status),
            "updated_at": self.updated_at.isoformat(),
            "components": [component.to_dict() for component in self.components],
            "incidents": list(self.incidents),
            "maintenance": list(self.maintenance),
        }


def _percent(figures: WindowFigures | None) -> float | None:
    uptime = None if figures is None else figures.uptime
    return None if uptime is None else round(uptime * 100.0, 4)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def day_view(
    start: float, totals: Totals, unknown_as_down: bool, date: str | None = None
) -> DayView:
    """The bar of the day starting at ``start`` from its summed time (``date``: that day's
    ISO date, when the caller has it already)."""
    figures = WindowFigures(start, start + DAY, totals, unknown_as_down)
    if totals.down > 0:
        status = DayStatus.DOWN
    elif totals.unknown > 0:
        status = DayStatus.UNKNOWN
    elif totals.degraded > 0:
        status = DayStatus.DEGRADED
    elif totals.maintenance > 0:
        status = DayStatus.MAINTENANCE
    elif totals.up > 0:
        status = DayStatus.UP
    else:
        status = DayStatus.NO_DATA
    return DayView(
        date=date or datetime.fromtimestamp(start, UTC).date().isoformat(),
        uptime_percent=_percent(figures),
        down_seconds=round(totals.down, 3),
        unknown_seconds=round(totals.unknown, 3),
        maintenance_seconds=round(totals.maintenance, 3),
        status=status,
    )


def page_status(statuses: Sequence[PageStatus]) -> PageStatus:
    """The whole page's state from its components' (see the module docstring)."""
    if not statuses:
        return PageStatus.UNKNOWN
    down = sum(1 for status in statuses if status is PageStatus.MAJOR_OUTAGE)
    if down:
        return PageStatus.MAJOR_OUTAGE if down == len(statuses) else PageStatus.PARTIAL_OUTAGE
    for status in (PageStatus.DEGRADED, PageStatus.MAINTENANCE, PageStatus.UNKNOWN):
        if status in statuses:
            return status
    return PageStatus.OPERATIONAL


def shown_components(checks: Iterable[str], settings: StatusPageSettings) -> dict[str, str]:
    """Check name -> public name of the checks shown, in the order they are shown."""
    present = set(checks)
    hidden = {OVERALL, *settings.hidden}
    if settings.components:
        pairs = [(c, name) for c, name in settings.components.items() if c in present]
    else:
        pairs = [(c, c) for c in sorted(present)]
    return dict([(c, name) for c, name in pairs if c not in hidden][:MAX_COMPONENTS])


class StatusBuilder:
    """Computes the public document from the monitor's store and calendar."""

    def __init__(self, monitor: UptimeMonitor, settings: StatusPageSettings) -> None:
        self.monitor = monitor
        self.settings = settings
        self.source = Source(settings.source)

    async def build(self) -> StatusView:
        monitor = self.monitor
        now = monitor.clock.time()
        states = await monitor.store.load_states(self.source)
        names = shown_components(states, self.settings)
        wanted = [*names, *([OVERALL] if OVERALL in states else [])]
        windows = await monitor.reader.windows(
            self.source, UPTIME_WINDOWS, components=wanted, states=states
        )
        days = await self._days({check: states[check] for check in names}, now)
        members: dict[str, list[str]] = {}
        for check, public in names.items():
            members.setdefault(public, []).append(check)
        components = []
        for public, checks in members.items():
            views = [
                ComponentView(
                    name=public,
                    status=self._status(check, states[check], now),
                    uptime={w: _percent(found.get(check)) for w, found in windows.items()},
                    days=days[check],
                )
                for check in checks
            ]
            components.append(_worst(public, views))
        return StatusView(
            title=self.settings.title,
            status=page_status([component.status for component in components]),
            updated_at=datetime.fromtimestamp(now, UTC),
            components=components,
            incidents=self._incidents(names, states),
            maintenance=self._maintenance(names, now),
            badge_percent=_percent(windows[BADGE_WINDOW].get(OVERALL)),
        )

    def _status(self, check: str, state: ComponentState, now: float) -> PageStatus:
        monitor = self.monitor
        if monitor.calendar.active(datetime.fromtimestamp(now, UTC), check):
            return PageStatus.MAINTENANCE
        if now - state.last_at > monitor.settings.unknown_after_intervals * state.interval:
            return PageStatus.UNKNOWN
        return _OF_BEAT[state.last_status]

    async def _days(
        self, states: Mapping[str, ComponentState], now: float
    ) -> dict[str, list[DayView]]:
        """The last :data:`DAYS` days of each check from its day buckets (one query for
        all), plus each one's open heartbeat gap, which no bucket holds yet."""
        today = float(math.floor(now / DAY) * DAY)
        first = today - (DAYS - 1) * DAY
        end = today + DAY
        rows = await self.monitor.store.buckets_of(self.source, list(states), [(DAY, first, end)])
        as_down = self.monitor.reader.unknown_as_down
        dates = {
            start: datetime.fromtimestamp(start, UTC).date().isoformat()
            for start in (first + i * DAY for i in range(DAYS))
        }
        out: dict[str, list[DayView]] = {}
        for check, state in states.items():
            days = {start: Totals() for start in dates}
            for _, start, totals, _ in rows.get(check, ()):
                if start in days:
                    days[start].add(totals)
            for span in self._open_gap(check, state, max(first, state.last_at), now):
                for start, seconds in split_at(span.start, span.end, DAY):
                    if start in days:
                        totals = days[start]
                        if span.state is TimeState.MAINTENANCE:
                            totals.maintenance += seconds
                        else:
                            totals.unknown += seconds
            out[check] = [
                day_view(start, totals, as_down, dates[start]) for start, totals in days.items()
            ]
        return out

    def _open_gap(self, check: str, state: ComponentState, start: float, now: float) -> list[Span]:
        cap = self.monitor.settings.unknown_after_intervals * state.interval
        if now - state.last_at <= cap or now <= start:
            return []
        gap = [Span(start, now, TimeState.UNKNOWN)]
        windows = self.monitor.calendar.occurrences(check, start, now)
        return without(gap, windows) if windows else gap

    def _incidents(
        self, names: dict[str, str], states: dict[str, ComponentState]
    ) -> list[dict[str, str]]:
        """The open incidents of the shown components: public name, start and cause only."""
        earliest: dict[str, tuple[float, str]] = {}
        for check, public in names.items():
            incident = states[check].incident
            if incident is None or not incident.open:
                continue
            known = earliest.get(public)
            if known is None or incident.started_at < known[0]:
                earliest[public] = (incident.started_at, incident.cause)
        ordered = sorted(earliest.items(), key=lambda item: -item[1][0])
        return [
            {"component": public, "started_at": _iso(started), "cause": cause}
            for public, (started, cause) in ordered
        ]

    def _maintenance(self, names: dict[str, str], now: float) -> list[dict[str, Any]]:
        """The windows running now or starting within :data:`UPCOMING` that cover a shown
        component: their next occurrence, with the public names of what they cover."""
        at = datetime.fromtimestamp(now, UTC)
        found = []
        for window in self.monitor.calendar.windows:
            covered = list(dict.fromkeys(p for c, p in names.items() if window.covers(c)))
            if not covered:
                continue
            occurrences = window.occurrences(at, at + timedelta(seconds=UPCOMING))
            if not occurrences:
                continue
            starts, ends = occurrences[0]
            found.append(
                {
                    "title": window.title,
                    "starts_at": starts.isoformat(),
                    "ends_at": ends.isoformat(),
                    "active": starts <= at < ends,
                    "components": covered,
                }
            )
        found.sort(key=lambda entry: str(entry["starts_at"]))
        return found[:MAX_MAINTENANCE]


def _worst(name: str, views: Sequence[ComponentView]) -> ComponentView:
    """One public component from the views of the checks shown under its name."""
    if len(views) == 1:
        return views[0]
    status = max((view.status for view in views), key=_COMPONENT_RANK.__getitem__)
    uptime: dict[str, float | None] = {}
    for window in UPTIME_WINDOWS:
        known = [p for p in (v.uptime[window] for v in views) if p is not None]
        uptime[window] = min(known) if known else None
    days = [
        max(same_day, key=lambda day: day.rank)
        for same_day in zip(*(v.days for v in views), strict=True)
    ]
    return ComponentView(name=name, status=status, uptime=uptime, days=days)


# -- caching ------------------------------------------------------------------------------


class StatusCache:
    """The last document for ``seconds`` on ``clock``; concurrent misses share one build."""

    def __init__(
        self, build: Callable[[], Awaitable[StatusView]], clock: Clock, seconds: float
    ) -> None:
        self._build = build
        self._clock = clock
        self._seconds = seconds
        self._value: StatusView | None = None
        self._built_at = 0.0
        self._pending: asyncio.Future[StatusView] | None = None

    async def get(self) -> StatusView:
        if self._value is not None and self._clock.monotonic() - self._built_at < self._seconds:
            return self._value
        if self._pending is None:
            pending = asyncio.ensure_future(self._refresh())
            # retrieved here so that a build nobody awaits any more is not reported
            pending.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._pending = pending
        # shielded: a client that goes away does not cancel the others' build
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> StatusView:
        try:
            value = await self._build()
            self._value, self._built_at = value, self._clock.monotonic()
            return value
        finally:
            self._pending = None
