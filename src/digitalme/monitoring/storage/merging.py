"""Merging stored buckets without decoding every sketch into a DDSketch.

A long window or a roll-up merges thousands of serialized sketches. Decoding
each one (``sketch_from_bytes``) and merging it (``DDSketch.merge``) costs about
0.4 ms per bucket in pure Python, mostly spent walking the zero padding of dense
stores; here the protobuf (parsed in C) is added bin by bin into one running
total and a single DDSketch is built at the end: the same bins, so exactly the
same quantiles, about ten times faster.
"""

from __future__ import annotations

import math
from typing import Any, cast

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import KeyMappingProto
from ddsketch.store import DenseStore
from sqlalchemy import RowMapping

from digitalme.monitoring.telemetry.sketch import Bucket, new_sketch

_mapping_from_proto: Any = KeyMappingProto.from_proto  # untyped in ddsketch


def _add_bins(total: dict[int, float], store: Any) -> None:
    key = store.contiguousBinIndexOffset
    for count in store.contiguousBinCounts:
        if count:
            total[key] = total.get(key, 0.0) + count
        key += 1
    for key, count in store.binCounts.items():
        total[key] = total.get(key, 0.0) + count


def _dense_store(total: dict[int, float]) -> DenseStore:
    store = DenseStore()
    if total:
        low, high = min(total), max(total)
        store.bins = [total.get(key, 0.0) for key in range(low, high + 1)]
        store.offset = store.min_key = low
        store.max_key = high
        store.count = sum(store.bins)
    return store


class SketchMerger:
    """Adds up serialized DDSketches; :meth:`sketch` is their merge.

    Every sketch must use the same index mapping (the same relative accuracy),
    as :meth:`DDSketch.merge` requires; a different one raises ``ValueError``.
    """

    __slots__ = ("_mapping", "_negative", "_positive", "_zero")

    def __init__(self) -> None:
        self._mapping: Any = None
        self._positive: dict[int, float] = {}
        self._negative: dict[int, float] = {}
        self._zero = 0.0

    def add(self, data: bytes) -> None:
        """Fold one serialized sketch in."""
        message = ddsketch_pb2.DDSketch()
        message.ParseFromString(data)
        if self._mapping is None:
            self._mapping = message.mapping
        elif message.mapping != self._mapping:
            raise ValueError("cannot merge sketches with different index mappings")
        _add_bins(self._positive, message.positiveValues)
        _add_bins(self._negative, message.negativeValues)
        self._zero += message.zeroCount

    def sketch(self) -> DDSketch:
        """The merged sketch (an empty one when nothing was added)."""
        if self._mapping is None:
            return new_sketch()
        merged = BaseDDSketch(
            mapping=_mapping_from_proto(self._mapping),
            store=_dense_store(self._positive),
            negative_store=_dense_store(self._negative),
            zero_count=self._zero,
        )
        # what sketch_from_bytes returns too: a BaseDDSketch, typed as the DDSketch it acts as
        return cast(DDSketch, merged)


class BucketMerger:
    """Merges stored bucket rows (count, sum, min, max, sketch) into one :class:`Bucket`."""

    __slots__ = ("count", "max", "min", "sketches", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.sketches = SketchMerger()

    def add(self, row: RowMapping) -> None:
        """Fold in a row of ``telemetry_metric_buckets`` (the sketch column included)."""
        self.count += row["count"]
        self.sum += row["sum"]
        self.min = min(self.min, row["min"])
        self.max = max(self.max, row["max"])
        self.sketches.add(row["sketch"])

    def bucket(self, start: float, resolution: int) -> Bucket:
        """The merged bucket, labelled ``[start, start + resolution)``."""
        return Bucket(
            start, resolution, self.count, self.sum, self.min, self.max, self.sketches.sketch()
        )
