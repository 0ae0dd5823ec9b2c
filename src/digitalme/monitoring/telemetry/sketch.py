"""Metric buckets: count, sum, min, max and a mergeable DDSketch (1% relative error)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ddsketch import DDSketch
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto

RELATIVE_ACCURACY = 0.01


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
