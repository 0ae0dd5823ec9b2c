"""Merging stored buckets without decoding every sketch into a DDSketch.

A long window or a roll-up merges thousands of serialized sketches. Decoding
each one (``sketch_from_bytes``) and merging it (``DDSketch.merge``) costs about
0.4 ms per bucket in pure Python, mostly spent walking the zero padding of dense
stores; here each sketch's bins are added into running totals and a single
DDSketch is built at the end: the same bins, so exactly the same quantiles.

Touching every bin from Python is what costs: even reading a parsed message's
repeated field walks it one float at a time (about 0.2 us a bin, and a 10 s
bucket's dense store holds 128 or 256 bins, mostly zeros). So the protobuf wire
format of a sketch, small and fixed (``ddsketch.pb``: a mapping, two stores of
packed counts and an offset, a zero count), is read here directly: each store's
packed counts are kept as the raw bytes they are, and all of them are added at
the end in one ``numpy.bincount`` (in input order: every bin gets the same sum,
added in the same order, as merging sketch by sketch). A sketch encoded in any
other way (sparse bins, a field twice, unknown fields) is parsed by protobuf
instead, with the same result. About 3 us a minute bucket's sketch (was 7-15) and 17 us a
padded 10 s bucket's (was about 50); see BENCHMARKS.md.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import KeyMappingProto
from ddsketch.store import DenseStore
from sqlalchemy import RowMapping

from digitalme.monitoring.telemetry.sketch import Bucket, new_sketch

_mapping_from_proto: Any = KeyMappingProto.from_proto  # untyped in ddsketch
_DOUBLE = struct.Struct("<d")
_LITTLE_DOUBLE = np.dtype("<f8")  # protobuf's doubles, whatever the machine's order
MAX_KEYS = 1 << 17
"""Bound on the keys one merge spans (1 MiB of totals): all the positive doubles map to
about 71,000 keys at 1% (a microsecond to a day: about 1,500); more is a corrupt sketch."""

# wire tags (field number << 3 | wire type) of ddsketch.proto's DDSketch and Store
_MAPPING, _POSITIVE, _NEGATIVE, _ZERO_COUNT = 0x0A, 0x12, 0x1A, 0x21
_CONTIGUOUS, _INDEX_OFFSET = 0x12, 0x18


class _Unexpected(Exception):
    """A sketch not encoded as :func:`~.sketch.sketch_to_bytes` writes them."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:  # most lengths and offsets: one byte
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 63:
            raise _Unexpected


def _store(data: bytes, pos: int, end: int) -> tuple[int, bytes]:
    """The Store in ``data[pos:end]``: its index offset and packed contiguous counts."""
    low, run = 0, b""
    seen_run = seen_low = False
    while pos < end:
        tag = data[pos]
        if tag == _CONTIGUOUS and not seen_run:
            length, pos = _varint(data, pos + 1)
            if pos + length > end or length % 8:
                raise _Unexpected
            run, pos, seen_run = data[pos : pos + length], pos + length, True
        elif tag == _INDEX_OFFSET and not seen_low:
            raw, pos = _varint(data, pos + 1)
            low, seen_low = (raw >> 1) ^ -(raw & 1), True  # a zigzag-encoded sint32
        else:  # sparse bin counts (a map), a field twice or unknown: protobuf decides
            raise _Unexpected
    if pos != end:
        raise _Unexpected
    return low, run


def _decode(data: bytes) -> tuple[bytes, int, bytes, int, bytes, float]:
    """A serialized DDSketch as its mapping (serialized), positive and negative stores
    (index offset, packed counts) and zero count; :class:`_Unexpected` for any field
    :func:`~.sketch.sketch_to_bytes` does not write, or written twice (which would merge)."""
    mapping, zero = b"", 0.0
    positive: tuple[int, bytes] = (0, b"")
    negative: tuple[int, bytes] = (0, b"")
    seen: set[int] = set()
    pos, size = 0, len(data)
    while pos < size:
        tag = data[pos]
        if tag in seen:
            raise _Unexpected
        seen.add(tag)
        if tag == _ZERO_COUNT:
            (zero,) = _DOUBLE.unpack_from(data, pos + 1)
            pos += 9
            continue
        length, pos = _varint(data, pos + 1)
        end = pos + length
        if end > size:
            raise _Unexpected
        if tag == _POSITIVE:
            positive = _store(data, pos, end)
        elif tag == _NEGATIVE:
            negative = _store(data, pos, end)
        elif tag == _MAPPING:
            mapping = data[pos:end]
        else:
            raise _Unexpected
        pos = end
    return mapping, *positive, *negative, zero


class _Bins:
    """The bins of one side of the merged sketches, added up once at the end.

    Each sketch's contiguous counts are kept as they came (raw bytes and the key of
    the first); :meth:`store` adds them all in one ``numpy.bincount``, which adds
    in input order, so every bin's total is the same sum, in the same order, as
    adding the sketches one by one. The keys span the mapping's range over the
    values recorded (about 1,000 from a microsecond to a day at 1%).
    """

    __slots__ = ("lows", "runs")

    def __init__(self) -> None:
        self.lows: list[int] = []
        self.runs: list[bytes] = []

    def add_run(self, low: int, run: bytes) -> None:
        """Add packed little-endian counts (doubles) of keys ``low, low + 1, ...``."""
        if run:
            self.lows.append(low)
            self.runs.append(run)

    def add_values(self, low: int, values: Sequence[float]) -> None:
        """Add the counts of keys ``low, low + 1, ...``."""
        self.add_run(low, np.asarray(values, dtype=_LITTLE_DOUBLE).tobytes())

    def store(self) -> DenseStore:
        """The totals as a ``DenseStore`` spanning the first to the last non-empty bin."""
        store = DenseStore()
        if not self.runs:
            return store
        counts = np.frombuffer(b"".join(self.runs), dtype=_LITTLE_DOUBLE)
        lengths = np.fromiter((len(run) // 8 for run in self.runs), np.int64, len(self.runs))
        firsts = np.cumsum(lengths) - lengths  # where each run starts in ``counts``
        keys = np.arange(len(counts)) + np.repeat(np.asarray(self.lows) - firsts, lengths)
        lowest = int(keys.min())
        if int(keys.max()) - lowest >= MAX_KEYS:
            raise ValueError("sketch bins spread over more keys than any recorded value gives")
        totals = np.bincount(keys - lowest, weights=counts)
        filled = np.flatnonzero(totals)
        if len(filled):
            low, high = int(filled[0]), int(filled[-1]) + 1
            store.bins = totals[low:high].tolist()
            store.offset = store.min_key = lowest + low
            store.max_key = lowest + high - 1
            store.count = sum(store.bins)
        return store


class SketchMerger:
    """Adds up serialized DDSketches; :meth:`sketch` is their merge.

    Every sketch must use the same index mapping (the same relative accuracy),
    as :meth:`DDSketch.merge` requires; a different one raises ``ValueError``.
    """

    __slots__ = ("_mapping", "_mapping_bytes", "_negative", "_positive", "_zero")

    def __init__(self) -> None:
        self._mapping: Any = None
        self._mapping_bytes: bytes | None = None
        self._positive = _Bins()
        self._negative = _Bins()
        self._zero = 0.0

    def add(self, data: bytes) -> None:
        """Fold one serialized sketch in."""
        try:
            mapping, positive_low, positive_run, negative_low, negative_run, zero = _decode(data)
        except (_Unexpected, IndexError, struct.error):
            self._add_parsed(data)
            return
        if mapping != self._mapping_bytes:
            message = ddsketch_pb2.IndexMapping()
            message.ParseFromString(mapping)
            self._check_mapping(message)
            if self._mapping_bytes is None:
                self._mapping_bytes = mapping
        self._positive.add_run(positive_low, positive_run)
        self._negative.add_run(negative_low, negative_run)
        self._zero += zero

    def _add_parsed(self, data: bytes) -> None:
        message = ddsketch_pb2.DDSketch()
        message.ParseFromString(data)
        self._check_mapping(message.mapping)
        for bins, store in (
            (self._positive, message.positiveValues),
            (self._negative, message.negativeValues),
        ):
            bins.add_values(store.contiguousBinIndexOffset, list(store.contiguousBinCounts))
            for key, count in store.binCounts.items():
                bins.add_values(key, [count])
        self._zero += message.zeroCount

    def _check_mapping(self, mapping: Any) -> None:
        if self._mapping is None:
            self._mapping = mapping
        elif mapping != self._mapping:
            raise ValueError("cannot merge sketches with different index mappings")

    def sketch(self) -> DDSketch:
        """The merged sketch (an empty one when nothing was added)."""
        if self._mapping is None:
            return new_sketch()
        merged = BaseDDSketch(
            mapping=_mapping_from_proto(self._mapping),
            store=self._positive.store(),
            negative_store=self._negative.store(),
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

    def add_numbers(self, row: RowMapping) -> None:
        """Fold in a row's count, sum and extremes only (a row read without its sketch)."""
        self.count += row["count"]
        self.sum += row["sum"]
        self.min = min(self.min, row["min"])
        self.max = max(self.max, row["max"])

    def bucket(self, start: float, resolution: int) -> Bucket:
        """The merged bucket, labelled ``[start, start + resolution)``."""
        return Bucket(
            start, resolution, self.count, self.sum, self.min, self.max, self.sketches.sketch()
        )
