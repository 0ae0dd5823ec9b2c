"""Metric buckets: count, sum, min, max and a mergeable DDSketch (1% relative error)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto

RELATIVE_ACCURACY = 0.01
# The same mapping DDSketch(RELATIVE_ACCURACY) builds for itself (tested): values with
# one key land in one sketch bin, so a batch can be added one bin at a time.
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


def new_sketch() -> DDSketch:
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


def sketch_to_bytes(sketch: DDSketch) -> bytes:
    data: bytes = DDSketchProto.to_proto(sketch).SerializeToString()  # type: ignore[no-untyped-call]
    return data


def sketch_from_bytes(data: bytes) -> DDSketch:
    message = ddsketch_pb2.DDSketch()
    message.ParseFromString(data)
    sketch: DDSketch = DDSketchProto.from_proto(message)  # type: ignore[no-untyped-call]
    return sketch


@dataclass(slots=True)
class Bucket:
    """Aggregate of one series over ``[start, start + resolution)`` (epoch seconds)."""

    start: float
    resolution: int
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    sketch: DDSketch = field(default_factory=new_sketch)

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.sketch.add(value)

    def add_many(self, values: list[float]) -> None:
        """``add`` each of ``values``, the sketch one bin at a time (a tick's batch of
        request durations falls into a few dozen bins; the per-value work is the key).

        Each bin gets one of its values with the bin's count as weight: the sketch's
        bins and count are exact, its own sum and extremes are not, which nothing
        reads (the bucket keeps exact ones, and a stored sketch holds only the bins).
        """
        if not values:
            return
        self.count += len(values)
        self.sum += math.fsum(values)
        self.min = min(self.min, min(values))
        self.max = max(self.max, max(values))
        sketch = self.sketch
        smallest = _MAPPING.min_possible
        positive = [value for value in values if value > smallest]
        if len(positive) != len(values):
            for value in values:
                if value <= smallest:
                    sketch.add(value)
        # _MAPPING.key(value), inlined (the same expression: a call per value is most of the cost)
        log, ceil, multiplier, offset = math.log, math.ceil, _MAPPING._multiplier, _MAPPING._offset
        keys = [int(ceil(log(value, 2) * multiplier) + offset) for value in positive]
        representative = dict(zip(keys, positive, strict=True))
        for key, weight in Counter(keys).items():
            sketch.add(representative[key], weight)

    def merge(self, other: Bucket) -> None:
        """Fold ``other`` into this bucket (sketches merge, counts add)."""
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sketch.merge(other.sketch)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) within 1% relative error, None when empty."""
        if self.count == 0:
            return None
        value = self.sketch.get_quantile_value(q)
        return None if value is None else min(max(float(value), self.min), self.max)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None
