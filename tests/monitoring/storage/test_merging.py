"""The fast merge of serialized sketches equals decoding and merging each one."""

from __future__ import annotations

import random

import pytest
from ddsketch import DDSketch
from ddsketch.pb import ddsketch_pb2
from google.protobuf.message import DecodeError

from digitalme.monitoring.storage.merging import SketchMerger
from digitalme.monitoring.telemetry.sketch import new_sketch, sketch_from_bytes, sketch_to_bytes

QUANTILES = [i / 100 for i in range(101)]


def _sketches(seed: int, count: int) -> list[DDSketch]:
    rng = random.Random(seed)
    sketches = []
    for _ in range(count):
        sketch = new_sketch()
        for _ in range(rng.randint(1, 80)):
            kind = rng.random()
            if kind < 0.8:
                sketch.add(rng.lognormvariate(3, 2))
            elif kind < 0.9:
                sketch.add(0.0)
            else:
                sketch.add(-rng.expovariate(0.05))
        sketches.append(sketch)
    return sketches


@pytest.mark.parametrize("seed", range(5))
def test_merged_bins_give_exactly_the_quantiles_of_ddsketch_merge(seed: int) -> None:
    blobs = [sketch_to_bytes(sketch) for sketch in _sketches(seed, 50)]
    expected = sketch_from_bytes(blobs[0])
    for blob in blobs[1:]:
        expected.merge(sketch_from_bytes(blob))

    merger = SketchMerger()
    for blob in blobs:
        merger.add(blob)
    merged = merger.sketch()
    round_trip = sketch_from_bytes(sketch_to_bytes(merged))

    assert merged.count == expected.count
    want = [expected.get_quantile_value(q) for q in QUANTILES]
    assert [merged.get_quantile_value(q) for q in QUANTILES] == want
    assert [round_trip.get_quantile_value(q) for q in QUANTILES] == want


def test_the_merged_sketch_keeps_working_as_a_sketch() -> None:
    merger = SketchMerger()
    merger.add(sketch_to_bytes(_sketches(9, 1)[0]))
    merged = merger.sketch()

    merged.add(1e9)
    merged.merge(_sketches(10, 1)[0])

    assert merged.get_quantile_value(1.0) == pytest.approx(1e9, rel=0.01)


def test_an_empty_merge_is_an_empty_sketch() -> None:
    assert SketchMerger().sketch().count == 0


def test_sketches_of_another_accuracy_are_refused() -> None:
    merger = SketchMerger()
    merger.add(sketch_to_bytes(_sketches(1, 1)[0]))
    other = DDSketch(relative_accuracy=0.05)
    other.add(3.0)

    with pytest.raises(ValueError, match="mappings"):
        merger.add(sketch_to_bytes(other))


def _sparse(sketch: DDSketch) -> bytes:
    """``sketch`` encoded with sparse bin counts (a map), as other DDSketch writers may."""
    message = ddsketch_pb2.DDSketch()
    message.ParseFromString(sketch_to_bytes(sketch))
    for store in (message.positiveValues, message.negativeValues):
        offset = store.contiguousBinIndexOffset
        counts = list(store.contiguousBinCounts)
        del store.contiguousBinCounts[:]
        store.contiguousBinIndexOffset = 0
        for index, count in enumerate(counts):
            if count:
                store.binCounts[offset + index] = count
    return message.SerializeToString()


def test_sketches_encoded_otherwise_merge_the_same() -> None:
    sketches = _sketches(21, 40)
    plain = SketchMerger()
    mixed = SketchMerger()
    for index, sketch in enumerate(sketches):
        plain.add(sketch_to_bytes(sketch))
        mixed.add(_sparse(sketch) if index % 3 else sketch_to_bytes(sketch))

    want = [plain.sketch().get_quantile_value(q) for q in QUANTILES]
    assert [mixed.sketch().get_quantile_value(q) for q in QUANTILES] == want
    assert mixed.sketch().count == plain.sketch().count


def test_a_corrupt_sketch_is_refused_not_misread() -> None:
    merger = SketchMerger()
    data = sketch_to_bytes(_sketches(2, 1)[0])
    with pytest.raises(DecodeError):
        merger.add(data[:-3])


def test_bins_spread_beyond_any_mapping_are_refused() -> None:
    message = ddsketch_pb2.DDSketch()
    message.ParseFromString(sketch_to_bytes(_sketches(4, 1)[0]))
    message.positiveValues.contiguousBinIndexOffset = 2_000_000_000  # no value maps there
    merger = SketchMerger()
    merger.add(sketch_to_bytes(_sketches(4, 1)[0]))
    merger.add(message.SerializeToString())
    with pytest.raises(ValueError, match="keys"):
        merger.sketch()
