"""What rules read: each aggregation over the window's buckets, per group, cached correctly."""

from __future__ import annotations

import random

import pytest

from digitalme.monitoring.alerts.bins import Bins
from digitalme.monitoring.alerts.evaluation import (
    LiveSource,
    Sample,
    WindowReader,
    bucket_range,
    evaluate_rule,
)
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.testing import FakeClock
from monitoring.alerts.helpers import Feed, rule


def samples(aggregator: Aggregator, clock: FakeClock, **fields: object) -> list[Sample]:
    reader = WindowReader()
    reader.begin(LiveSource(aggregator.live_buckets(), aggregator.resolution), clock.time())
    return sorted(evaluate_rule(rule(**fields), reader), key=lambda s: sorted(s.labels.items()))


def one(aggregator: Aggregator, clock: FakeClock, **fields: object) -> float | None:
    found = samples(aggregator, clock, **fields)
    assert len(found) == 1
    return found[0].value


def test_the_window_is_whole_buckets_the_newest_still_filling() -> None:
    assert bucket_range(60, 1005.0, 10) == (950.0, 1000.0, 55.0)
    assert bucket_range(30, 1000.0, 10) == (980.0, 1000.0, 20.0)
    assert bucket_range(5, 1003.0, 10) == (1000.0, 1000.0, 3.0)
    assert bucket_range(45, 1000.0, 10) == (960.0, 1000.0, 40.0)


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("avg", 25.0),
        ("sum", 100.0),
        ("count", 4.0),
        ("min", 10.0),
        ("max", 40.0),
        # 4 values over a 60 s window that covers 55 s so far
        ("rate_per_second", 4 / 55),
        ("rate_per_minute", 4 * 60 / 55),
    ],
)
def test_aggregations(
    aggregation: str, expected: float, feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    feed("m", 10, 20)
    clock.advance(25)
    feed("m", 30, 40)
    clock.advance(30)  # 55 s after the first bucket started
    value = one(aggregator, clock, aggregation=aggregation)
    assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("aggregation", "q"), [("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)]
)
def test_percentiles_are_within_the_sketch_error(
    aggregation: str, q: float, feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    values = [float(v) for v in range(1, 1001)]
    for chunk in range(0, 1000, 250):  # spread over several buckets
        feed("m", *values[chunk : chunk + 250])
        clock.advance(10)
    value = one(aggregator, clock, aggregation=aggregation)
    assert value is not None
    assert value == pytest.approx(q * 1000, rel=0.02)


def test_values_older_than_the_window_are_left_out(
    feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    feed("m", 1000)
    clock.advance(60)  # the first bucket is now outside a 60 s window
    feed("m", 1)
    assert one(aggregator, clock, aggregation="max") == 1


def test_filters_and_group_by_give_one_sample_per_group(
    feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    feed("http", 100, labels={"route": "a", "status_code": "200"})
    feed("http", 300, labels={"route": "a", "status_code": "500"})
    feed("http", 50, labels={"route": "b", "status_code": "503"})
    feed("http", 70, labels={"route": "b", "status_code": "404"})
    feed("other", 999, labels={"route": "a", "status_code": "500"})

    found = samples(
        aggregator,
        clock,
        metric_name="http",
        aggregation="max",
        filters={"status_code": "!~4.."},
        group_by=["route"],
    )

    assert found == [
        Sample({"route": "a"}, 300.0, 2),
        Sample({"route": "b"}, 50.0, 1),
    ]


def test_a_missing_group_label_is_an_empty_group(
    feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    feed("m", 5)
    found = samples(aggregator, clock, group_by=["route"])
    assert found == [Sample({"route": ""}, 5.0, 1)]


def test_ratio_of_counts_per_group(feed: Feed, aggregator: Aggregator, clock: FakeClock) -> None:
    for _ in range(3):
        feed("http", 10, labels={"route": "a", "status_code": "500"})
    for _ in range(7):
        feed("http", 10, labels={"route": "a", "status_code": "200"})
    for _ in range(4):
        feed("http", 10, labels={"route": "b", "status_code": "200"})

    found = samples(
        aggregator,
        clock,
        metric_name="http",
        aggregation="ratio",
        filters={"status_code": "=~5.."},
        denominator={},
        group_by=["route"],
    )

    # points are the denominator's values; a group without errors has ratio 0
    assert found == [Sample({"route": "a"}, 0.3, 10), Sample({"route": "b"}, 0.0, 4)]


def test_ratio_of_sums_across_metrics(feed: Feed, aggregator: Aggregator, clock: FakeClock) -> None:
    feed("errors", 2, 3)
    feed("requests", 50, 50)
    value = one(
        aggregator,
        clock,
        metric_name="errors",
        aggregation="ratio",
        ratio_of="sum",
        denominator={"metric": "requests"},
    )
    assert value == pytest.approx(0.05)


def test_no_data_gives_no_samples(aggregator: Aggregator, clock: FakeClock) -> None:
    assert samples(aggregator, clock) == []
    assert samples(aggregator, clock, aggregation="ratio", denominator={}) == []


def test_late_values_in_closed_buckets_are_seen(
    feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    """The cache of closed buckets notices a value folded into one of them late."""
    reader = WindowReader()
    high = rule(aggregation="max")
    p99 = rule(id="p", aggregation="p99")
    feed("m", 5)
    start = clock.time()
    clock.advance(20)

    def read() -> tuple[float | None, float | None]:
        reader.begin(LiveSource(aggregator.live_buckets(), 10), clock.time())
        return evaluate_rule(high, reader)[0].value, evaluate_rule(p99, reader)[0].value

    assert read() == (5.0, pytest.approx(5.0, rel=0.01))
    feed("m", 50, 50, 50, at=start)  # slow requests, folded into the bucket they started in
    assert read() == (50.0, pytest.approx(50.0, rel=0.01))
    clock.advance(1)
    assert read() == (50.0, pytest.approx(50.0, rel=0.01))


def test_identical_selections_are_computed_once_per_tick(
    feed: Feed, aggregator: Aggregator, clock: FakeClock
) -> None:
    feed("m", 1, 2, 3)
    reader = WindowReader()
    reader.begin(LiveSource(aggregator.live_buckets(), 10), clock.time())
    first = reader.groups("m", (), (), 60, False)
    assert reader.groups("m", (), (), 60, False) is first


def test_sketch_bins_give_the_quantiles_of_merged_ddsketches() -> None:
    generator = random.Random(7)
    buckets = []
    for _ in range(20):
        bucket = Bucket(0.0, 10)
        bucket.add_many([generator.lognormvariate(3, 2) for _ in range(generator.randint(1, 50))])
        for _ in range(generator.randint(0, 3)):
            bucket.add(generator.choice([0.0, -generator.uniform(1, 100)]))
        buckets.append(bucket)
    merged = Bucket(0.0, 10)
    bins = Bins()
    for bucket in buckets:
        merged.merge(bucket)
        bins.add_sketch(bucket.sketch)
    for q in (0.0, 0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert bins.quantile(q) == merged.sketch.get_quantile_value(q)
    for bucket in buckets[:5]:
        bins.subtract_sketch(bucket.sketch)
    rest = Bucket(0.0, 10)
    for bucket in buckets[5:]:
        rest.merge(bucket)
    assert bins.quantile(0.95) == rest.sketch.get_quantile_value(0.95)


def test_the_cached_reader_agrees_with_a_fresh_one_tick_after_tick(
    aggregator: Aggregator, clock: FakeClock, feed: Feed
) -> None:
    """Across bucket boundaries, late values and idle ticks, the caches change nothing."""
    generator = random.Random(3)
    rules = [
        rule(id="p95", aggregation="p95", group_by=["route"], evaluation_window=40),
        rule(id="p50", aggregation="p50", evaluation_window=30),
        rule(id="max", aggregation="max", filters={"route": "=~a|b"}, evaluation_window=20),
        rule(id="avg", aggregation="avg", group_by=["route"], evaluation_window=60),
        rule(id="rate", aggregation="rate_per_minute", evaluation_window=30),
    ]
    cached = WindowReader()
    for _ in range(240):  # 60 s in ticks of 250 ms
        for _ in range(generator.randint(0, 3)):
            route = generator.choice("abcd")
            late = generator.random() < 0.2
            at = clock.time() - (generator.uniform(0, 25) if late else 0)
            feed("m", generator.lognormvariate(4, 1), labels={"route": route}, at=at)
        source = LiveSource(aggregator.live_buckets(), 10, aggregator.totals)
        cached.begin(source, clock.time())
        fresh = WindowReader()
        fresh.begin(source, clock.time())
        for item in rules:
            assert sorted(evaluate_rule(item, cached), key=repr) == sorted(
                evaluate_rule(item, fresh), key=repr
            )
        clock.advance(0.25)
