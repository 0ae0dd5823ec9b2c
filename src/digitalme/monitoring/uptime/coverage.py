"""How heartbeats turn into counted time (pure functions).

A heartbeat at ``t`` vouches for the time since the previous heartbeat of its
component and source, ``[previous, t)``, in its own state: time-weighted, so the
figures stay right when the probe interval changes. Two limits:

* the first heartbeat of a component covers nothing (there is no "since");
* when the gap since the previous heartbeat is longer than ``cap`` (by default
  three probe intervals), the heartbeat covers only its own interval
  ``[t - interval, t)`` and the rest of the gap is **unknown**: nobody looked.

Parts of a span inside a maintenance window count as maintenance, whatever the
state. Spans are then cut at minute, hour and day boundaries (UTC) into the
buckets they add to (:data:`LEVELS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from digitalme.monitoring.uptime.model import BeatStatus, TimeState

__all__ = [
    "LEVELS",
    "BucketDelta",
    "Span",
    "covered_spans",
    "split_at",
    "without",
]

LEVELS: tuple[int, ...] = (60, 3600, 86400)
"""Bucket lengths in seconds; each divides the next, and days start at 00:00 UTC."""

_STATE_OF = {
    BeatStatus.UP: TimeState.UP,
    BeatStatus.DEGRADED: TimeState.DEGRADED,
    BeatStatus.DOWN: TimeState.DOWN,
}


@dataclass(frozen=True, slots=True)
class Span:
    """``[start, end)`` in epoch seconds, counted as ``state``."""

    start: float
    end: float
    state: TimeState

    @property
    def seconds(self) -> float:
        return self.end - self.start


def covered_spans(
    previous: float | None, at: float, status: BeatStatus, interval: float, cap: float
) -> list[Span]:
    """The spans a heartbeat at ``at`` covers, given the previous one's time."""
    if previous is None or at <= previous:
        return []
    state = _STATE_OF[status]
    if at - previous <= cap:
        return [Span(previous, at, state)]
    own = max(previous, at - interval)
    return [Span(previous, own, TimeState.UNKNOWN), Span(own, at, state)]


def without(spans: Iterable[Span], windows: Sequence[tuple[float, float]]) -> list[Span]:
    """``spans`` with the parts inside ``windows`` (sorted or not) counted as maintenance."""
    out: list[Span] = []
    for span in spans:
        cuts = sorted(
            (max(span.start, start), min(span.end, end))
            for start, end in windows
            if start < span.end and end > span.start
        )
        cursor = span.start
        for start, end in cuts:
            if start > cursor:
                out.append(Span(cursor, start, span.state))
            if end > cursor:
                out.append(Span(max(cursor, start), end, TimeState.MAINTENANCE))
                cursor = end
        if cursor < span.end:
            out.append(Span(cursor, span.end, span.state))
    return [span for span in out if span.end > span.start]


def split_at(start: float, end: float, level: int) -> Iterator[tuple[float, float]]:
    """``(bucket start, seconds)`` of ``[start, end)`` cut at multiples of ``level``."""
    cursor = start
    while cursor < end:
        bucket = math.floor(cursor / level) * level
        stop = min(end, bucket + level)
        yield float(bucket), stop - cursor
        cursor = stop


@dataclass(slots=True)
class BucketDelta:
    """What one batch adds to one bucket."""

    seconds: dict[TimeState, float] = field(default_factory=dict)
    beats: int = 0
    failed_beats: int = 0
    durations: list[float] = field(default_factory=list)
