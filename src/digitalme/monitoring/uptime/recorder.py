"""The heartbeat recorder: turns heartbeats into stored time, buckets and incidents.

One recorder per source (the service's prober records ``inside``, a watcher
``outside``). Each batch continues from the components' state as stored, read
again before the batch, so a restart does not lose track (the gap while the
process was away becomes unknown time when the first heartbeat after it arrives,
:mod:`.coverage`), and several processes recording the same source (uvicorn
workers) interleave their heartbeats instead of counting the same time twice.

Incidents follow the counted time: one opens with the first down span (or
unknown span, when unknown counts as down) and closes where the next up or
degraded span starts, so an incident's length is the down time it holds.
Maintenance time neither opens nor closes one.

A batch that cannot be written is logged and counted (:attr:`HeartbeatRecorder.errors`)
and the state stays where it was, so the next batch covers the time since the
last stored heartbeat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import structlog
from sqlalchemy.exc import SQLAlchemyError

from digitalme.monitoring.alerts.model import new_id
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.uptime.coverage import (
    LEVELS,
    BucketDelta,
    Span,
    covered_spans,
    split_at,
    without,
)
from digitalme.monitoring.uptime.maintenance import MaintenanceCalendar
from digitalme.monitoring.uptime.model import BeatStatus, Heartbeat, Incident, Source, TimeState
from digitalme.monitoring.uptime.store import ComponentState, UptimeStore, UptimeWrite

__all__ = ["HeartbeatRecorder"]

log = structlog.get_logger("digitalme.monitoring.uptime")

MAX_FAILING = 20
"""Check names kept on one incident."""
_GOOD = (TimeState.UP, TimeState.DEGRADED)
STORE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
"""What a failing store raises; anything else is a bug (raised when ``strict``)."""


class HeartbeatRecorder:
    """Records batches of one source's heartbeats."""

    def __init__(
        self,
        store: UptimeStore,
        source: Source,
        calendar: MaintenanceCalendar,
        *,
        unknown_after_intervals: float = 3.0,
        unknown_as_down: bool = True,
        strict: bool = False,
    ) -> None:
        self.store = store
        self.strict = strict  # tests: an error that is not the store's is raised
        self.source = source
        self.calendar = calendar
        self.unknown_after_intervals = unknown_after_intervals
        self.unknown_as_down = unknown_as_down
        self.states: dict[str, ComponentState] = {}
        self._outages = Outages(
            "digitalme.monitoring.uptime",
            failed="uptime_write_failed",
            recovered="uptime_write_recovered",
            key="source",
        )
        self.recorded = 0
        self.errors = 0

    async def load(self) -> None:
        """Read the stored state (as :meth:`record` does before each batch)."""
        self.states = await self.store.load_states(self.source)

    async def record(self, beats: Sequence[Heartbeat]) -> bool:
        """Store ``beats`` (any order, several components); False when the store refused."""
        try:
            await self.load()
            batch, states = self._batch(beats)
            await self.store.write(batch)
        except Exception as exc:
            self.errors += 1
            if self.strict and not isinstance(exc, STORE_ERRORS):
                raise
            self._outages.failed(str(self.source), type(exc).__name__)
            return False
        self._outages.recovered(str(self.source))
        self.states.update(states)
        self.recorded += len(beats)
        return True

    def _batch(self, beats: Sequence[Heartbeat]) -> tuple[UptimeWrite, dict[str, ComponentState]]:
        batch = UptimeWrite(self.source, heartbeats=list(beats))
        states: dict[str, ComponentState] = {}
        for beat in sorted(beats, key=lambda b: b.at):
            state = states.get(beat.component) or self.states.get(beat.component)
            if state is not None and beat.at <= state.last_at:
                continue  # a repeat or out of order: already covered
            previous = None if state is None else state.last_at
            cap = self.unknown_after_intervals * beat.interval
            spans = covered_spans(previous, beat.at, beat.status, beat.interval, cap)
            if spans:
                windows = self.calendar.occurrences(beat.component, spans[0].start, beat.at)
                spans = without(spans, windows) if windows else spans
            for span in spans:
                for level in LEVELS:
                    for start, seconds in split_at(span.start, span.end, level):
                        delta = _delta(batch, beat.component, level, start)
                        delta.seconds[span.state] = delta.seconds.get(span.state, 0.0) + seconds
            for level in LEVELS:
                delta = _delta(batch, beat.component, level, math.floor(beat.at / level) * level)
                delta.beats += 1
                if beat.status is BeatStatus.DOWN:
                    delta.failed_beats += 1
                if beat.duration_ms is not None and math.isfinite(beat.duration_ms):
                    delta.durations.append(max(0.0, beat.duration_ms))
            incident = None if state is None else state.incident
            incident = self._follow(batch, beat, spans, incident)
            states[beat.component] = ComponentState(
                first_at=beat.at if state is None else state.first_at,
                last_at=beat.at,
                last_status=beat.status,
                interval=beat.interval,
                incident=incident,
            )
        batch.states = states
        return batch, states

    def _follow(
        self,
        batch: UptimeWrite,
        beat: Heartbeat,
        spans: Sequence[Span],
        incident: Incident | None,
    ) -> Incident | None:
        """Open, extend or close ``beat.component``'s incident along ``spans``."""
        if not spans and beat.status is BeatStatus.DOWN and incident is None:
            spans = [Span(beat.at, beat.at, TimeState.DOWN)]  # the first heartbeat, down
        for span in spans:
            bad = span.state is TimeState.DOWN or (
                span.state is TimeState.UNKNOWN and self.unknown_as_down
            )
            if bad:
                failing = list(beat.failing) if span.state is TimeState.DOWN else []
                if incident is None:
                    incident = Incident(
                        id=new_id(),
                        component=beat.component,
                        source=self.source,
                        cause="down" if span.state is TimeState.DOWN else "unknown",
                        started_at=span.start,
                        failing=failing[:MAX_FAILING],
                        description=beat.message if span.state is TimeState.DOWN else "",
                    )
                    batch.incidents[incident.id] = incident
                else:
                    extra = [name for name in failing if name not in incident.failing]
                    if extra and len(incident.failing) < MAX_FAILING:
                        incident = replace(
                            incident, failing=(incident.failing + extra)[:MAX_FAILING]
                        )
                        batch.incidents[incident.id] = incident
            elif span.state in _GOOD and incident is not None:
                batch.incidents[incident.id] = replace(incident, ended_at=span.start)
                incident = None
        return incident


def _delta(batch: UptimeWrite, component: str, level: int, start: float) -> BucketDelta:
    key = (component, level, float(start))
    delta = batch.deltas.get(key)
    if delta is None:
        delta = batch.deltas[key] = BucketDelta()
    return delta
