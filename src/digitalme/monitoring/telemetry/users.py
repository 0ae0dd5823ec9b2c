"""Active users: one HyperLogLog sketch of the authenticated users per minute.

User ids are unbounded, so they are never a metric dimension, and counting
distinct users of the stored request items would read every request of the
window (millions of rows for a day) and miss users whose requests were sampled
out. Instead the telemetry client adds the user of every request (before
sampling) to the sketch of its minute, and the sketches go to the sinks like
metric buckets: whole, each time one changes, upserted by (minute, instance).
Distinct users over any set of minutes is the estimate of the union of their
sketches, across instances too: a user seen by two instances counts once.

The sketches are Apache DataSketches' HLL (``lg_k`` 12, 8-bit registers: at
most 4 KiB a minute): exact while a minute holds few users (the sketch keeps
the hashed ids themselves up to a few hundred) and within about 1.6 % (one
standard deviation) beyond, on a day of minutes as on one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from datasketches import hll_sketch, hll_union, tgt_hll_type

__all__ = ["LG_K", "PERIOD", "SLICE", "ActiveUsers", "count_distinct", "load", "unite"]

SLICE = 60.0
"""Seconds: the length of one sketch's minute."""
PERIOD = 300.0
"""Seconds: the periods the store's retention job unites every instance's minutes into
(one sketch for 5 minutes), and the dashboard's slice of current and peak users."""
LG_K = 12


def load(data: bytes) -> hll_sketch:
    """A stored sketch, to union several times without decoding it again."""
    return hll_sketch.deserialize(data)


def _union(sketches: Iterable[bytes | hll_sketch]) -> hll_union:
    union = hll_union(LG_K)
    for sketch in sketches:
        union.update(hll_sketch.deserialize(sketch) if isinstance(sketch, bytes) else sketch)
    return union


def count_distinct(sketches: Iterable[bytes | hll_sketch]) -> int:
    """Distinct users of the union of ``sketches`` (serialized or not); 0 for none."""
    return round(float(_union(sketches).get_estimate()))


def unite(sketches: Iterable[bytes | hll_sketch]) -> bytes:
    """The union of ``sketches`` as one serialized sketch (what :func:`load` reads)."""
    result: bytes = _union(sketches).get_result(tgt_hll_type.HLL_8).serialize_compact()
    return result


class ActiveUsers:
    """The sketches of the last ``live_window`` seconds, and those changed since last taken."""

    def __init__(self, live_window: float) -> None:
        self.live_window = live_window
        self._minutes: dict[float, hll_sketch] = {}
        self._dirty: set[float] = set()

    @staticmethod
    def minute(at: float) -> float:
        return math.floor(at / SLICE) * SLICE

    def add(self, user_id: str, at: float) -> None:
        """Count ``user_id`` as active at ``at`` (epoch seconds)."""
        minute = self.minute(at)
        sketch = self._minutes.get(minute)
        if sketch is None:
            sketch = self._minutes[minute] = hll_sketch(LG_K, tgt_hll_type.HLL_8)
        sketch.update(user_id)
        self._dirty.add(minute)

    def take_dirty(self) -> list[tuple[float, bytes]]:
        """``(minute, serialized sketch)`` of each minute changed since the last call."""
        changed = [(m, self._minutes[m].serialize_compact()) for m in sorted(self._dirty)]
        self._dirty.clear()
        return changed

    def prune(self, now: float) -> None:
        """Forget minutes that ended before the live window (sent ones only)."""
        horizon = self.minute(now) - self.live_window
        for minute in [m for m in self._minutes if m < horizon and m not in self._dirty]:
            del self._minutes[minute]

    def sketches(self, start: float, end: float) -> list[tuple[float, hll_sketch]]:
        """The live minutes starting in ``[start, end)``, oldest first."""
        return sorted(
            ((m, s) for m, s in self._minutes.items() if start <= m < end), key=lambda pair: pair[0]
        )
