"""Buckets: adding a batch at once gives the same figures as adding value by value."""

from __future__ import annotations

import random

import pytest

from digitalme.monitoring.telemetry.aggregation import Totals
from digitalme.monitoring.telemetry.sketch import Bucket, new_sketch, sketch_to_bytes


def test_add_many_matches_add_one_by_one() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1.5) for _ in range(5000)] + [0.0, 0.0, -4.5, 1e-320]
    one_by_one, batched = Bucket(0, 10), Bucket(0, 10)
    for value in values:
        one_by_one.add(value)
    batched.add_many(values[:1234])
    batched.add_many(values[1234:])
    assert (batched.count, batched.min, batched.max) == (
        one_by_one.count,
        one_by_one.min,
        one_by_one.max,
    )
    assert batched.sum == pytest.approx(one_by_one.sum)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        assert batched.quantile(q) == one_by_one.quantile(q)
    # what the store keeps of a sketch (its bins) is the same too
    assert sketch_to_bytes(batched.sketch) == sketch_to_bytes(one_by_one.sketch)


def test_add_many_of_nothing_changes_nothing() -> None:
    bucket = Bucket(0, 10)
    bucket.add_many([])
    assert bucket.count == 0
    assert bucket.quantile(0.5) is None
    assert sketch_to_bytes(bucket.sketch) == sketch_to_bytes(new_sketch())


def test_totals_add_many_matches_add() -> None:
    values = [0.5, 1.0, 2.5, 3.0, 99.0, 100.0, 101.0, 60_000.0, 1e9]
    one_by_one, batched = Totals(), Totals()
    for value in values:
        one_by_one.add(value)
    batched.add_many(values)
    assert (batched.count, batched.sum, batched.buckets) == (
        one_by_one.count,
        one_by_one.sum,
        one_by_one.buckets,
    )
