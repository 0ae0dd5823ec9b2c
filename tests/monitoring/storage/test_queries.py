"""The query layer: merged windows, percentiles, groups, chart points, weighted counts."""

from __future__ import annotations

import math
import random

import pytest

from digitalme.monitoring.storage import Aggregation, QueryError, TelemetryStore
from digitalme.monitoring.telemetry.items import ItemKind, RequestItem, SecurityEventItem, Severity
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket

T0 = 1_767_225_600.0
NAME = "Request.Duration"
ROUTES = ("GET /a", "GET /b", "POST /c")

# (route, instance, bucket start) -> values; 10 minutes of 10 s buckets
Values = dict[tuple[str, str, float], list[float]]


def exact_quantile(values: list[float], q: float) -> float:
    """The value of rank q * (n - 1) in the sorted values (the sketch's definition)."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def close(actual: float | None, expected: float, relative: float = 0.01) -> bool:
    return actual is not None and abs(actual - expected) <= relative * abs(expected)


@pytest.fixture
async def values(store: TelemetryStore) -> Values:
    rng = random.Random(7)
    data: Values = {}
    for instance in ("web-1", "web-2"):
        buckets: list[tuple[SeriesKey, Bucket]] = []
        for step in range(60):
            start = T0 + 10 * step
            for route in ROUTES:
                if route == "POST /c" and step % 2:  # gaps: not every series every bucket
                    continue
                points = [rng.lognormvariate(3, 1) for _ in range(rng.randint(1, 30))]
                data[route, instance, start] = points
                bucket = Bucket(start, 10)
                for point in points:
                    bucket.add(point)
                key = SeriesKey(NAME, (("instance_role", "api"), ("route", route)))
                buckets.append((key, bucket))
        await store.write(TelemetryBatch(instance=instance, buckets=buckets))
    return data


def _select(data: Values, start: float, end: float, route: str | None = None) -> list[float]:
    return [
        value
        for (r, _, bucket_start), points in data.items()
        if start <= bucket_start < end and (route is None or r == route)
        for value in points
    ]


async def test_window_merges_every_bucket_and_percentiles_stay_within_one_percent(
    store: TelemetryStore, values: Values
) -> None:
    start, end = T0 + 60, T0 + 420
    expected = _select(values, start, end)

    [(group, bucket)] = await store.query.metric_window(NAME, start, end)

    assert group == {}
    assert bucket.count == len(expected)
    assert math.isclose(bucket.sum, sum(expected), rel_tol=1e-9)
    assert (bucket.min, bucket.max) == (min(expected), max(expected))
    for q in (0.5, 0.9, 0.95, 0.99):
        assert close(bucket.quantile(q), exact_quantile(expected, q)), q


async def test_window_groups_and_filters_by_dimension(
    store: TelemetryStore, values: Values
) -> None:
    start, end = T0, T0 + 600

    grouped = await store.query.metric_window(NAME, start, end, group_by=["route", "missing"])
    filtered = await store.query.metric_window(NAME, start, end, where={"route": "GET /b"})
    nothing = await store.query.metric_window(NAME, start, end, where={"route": "nope"})

    assert [group for group, _ in grouped] == [{"route": r, "missing": ""} for r in ROUTES]
    for (group, bucket), route in zip(grouped, ROUTES, strict=True):
        expected = _select(values, start, end, route)
        assert bucket.count == len(expected), group
        assert close(bucket.quantile(0.95), exact_quantile(expected, 0.95))
    [(_, only_b)] = filtered
    assert only_b.count == len(_select(values, start, end, "GET /b"))
    assert nothing == []
    assert await store.query.series(NAME) == [
        {"instance_role": "api", "route": route} for route in ROUTES
    ]
    assert await store.query.metric_names() == [NAME]


async def test_window_picks_a_resolution_and_accepts_an_explicit_one(
    store: TelemetryStore, values: Values
) -> None:
    total = len(_select(values, T0, T0 + 600))

    # a day-long window reads 60 s data, stitched to the 10 s buckets not rolled up yet
    [(_, day)] = await store.query.metric_window(NAME, T0 - 86400 + 600, T0 + 600)
    [(_, hourly)] = await store.query.metric_window(NAME, T0, T0 + 600, resolution=3600)

    assert day.count == total
    assert hourly.count == total
    with pytest.raises(QueryError) as caught:
        await store.query.metric_window(NAME, T0, T0 + 600, resolution=30)
    assert caught.value.field == "resolution"
    with pytest.raises(QueryError) as caught:
        await store.query.metric_window(NAME, T0 + 600, T0)
    assert caught.value.field == "end"


@pytest.mark.parametrize("agg", list(Aggregation))
async def test_points_compute_each_aggregation_per_step(
    store: TelemetryStore, values: Values, agg: Aggregation
) -> None:
    start, step = T0 - 60, 60.0
    end = T0 + 570  # the last step is 30 s long

    points = await store.query.metric_points(NAME, agg, step, start, end)

    assert [t for t, _ in points] == [start + i * step for i in range(11)]
    for t, value in points:
        chunk = _select(values, t, min(t + step, end))
        seconds = min(step, end - t)
        if not chunk:
            assert value == (0.0 if agg in ("count", "sum", "rate") else None)
        elif agg.quantile is not None:
            assert close(value, exact_quantile(chunk, agg.quantile)), (t, agg)
        else:
            expected = {
                "count": len(chunk),
                "sum": sum(chunk),
                "avg": sum(chunk) / len(chunk),
                "min": min(chunk),
                "max": max(chunk),
                "rate": len(chunk) / seconds,
            }[agg]
            assert value is not None
            assert math.isclose(value, expected, rel_tol=1e-9), (t, agg)


@pytest.mark.parametrize("agg", ["count", "p95"])
async def test_points_of_one_instance_leave_the_others_out(
    store: TelemetryStore, values: Values, agg: str
) -> None:
    points = await store.query.metric_points(NAME, agg, 600, T0, T0 + 600, instance="web-2")
    [(_, value)] = points
    only = [v for (_, instance, _), chunk in values.items() if instance == "web-2" for v in chunk]
    if agg == "count":
        assert value == len(only)
    else:
        assert close(value, exact_quantile(only, 0.95))
    assert await store.query.metric_points(NAME, agg, 600, T0, T0 + 600, instance="web-9") == [
        (T0, 0.0 if agg == "count" else None)
    ]


async def test_points_refuse_too_many_points_and_unknown_aggregations(
    store: TelemetryStore, values: Values
) -> None:
    with pytest.raises(QueryError) as caught:
        await store.query.metric_points(NAME, "p95", 10, T0, T0 + 86400)
    assert caught.value.field == "step"
    with pytest.raises(QueryError) as caught:
        await store.query.metric_points(NAME, "median", 60, T0, T0 + 600)
    assert caught.value.field == "agg"
    with pytest.raises(QueryError) as caught:
        await store.query.metric_points(NAME, "count", 0, T0, T0 + 600)
    assert caught.value.field == "step"

    points = await store.query.metric_points(NAME, "count", 10, T0, T0 + 86400, max_points=8640)
    assert len(points) == 8640


async def test_points_of_an_unknown_metric_are_empty_steps(store: TelemetryStore) -> None:
    points = await store.query.metric_points("Nope", "p99", 60, T0, T0 + 180)

    assert points == [(T0, None), (T0 + 60, None), (T0 + 120, None)]


def _requests() -> list[RequestItem]:
    """500 requests over 500 s: 25 failed (12 of them weight 2), 100 successful weight 4."""
    items = []
    failed = 0
    for i in range(500):
        weight = 1.0
        if i % 20 == 0:
            failed += 1
            weight = 2.0 if failed % 2 == 0 else 1.0
        elif i % 5 == 1:
            weight = 4.0
        items.append(
            RequestItem(
                time=T0 + i,
                weight=weight,
                name="GET /api/personality/{id}" if i % 2 else "POST /api/conversations",
                duration_ms=float(i),
                status_code=500 if i % 20 == 0 else 200,
                success=i % 20 != 0,
            )
        )
    return items


async def test_count_items_sums_sampling_weights(store: TelemetryStore) -> None:
    items = _requests()
    await store.write(TelemetryBatch(items=items))
    count = store.query.count_items

    assert sum(1 for item in items if not item.success) == 25
    assert await count(ItemKind.REQUEST, T0, T0 + 500, where={"success": False}) == 37.0
    assert await count("request", T0, T0 + 500, where={"status_code": 500}) == 37.0
    assert await count(ItemKind.REQUEST, T0, T0 + 500) == sum(item.weight for item in items)
    assert await count(ItemKind.REQUEST, T0, T0 + 500) == 475 + 300 + 37
    assert await count(ItemKind.REQUEST, T0, T0 + 100, where={"success": False}) == 7.0
    assert await count(ItemKind.REQUEST, T0 + 500, T0 + 900) == 0.0
    assert await count(
        ItemKind.REQUEST, T0, T0 + 500, where={"success": False, "name": "POST /api/conversations"}
    ) == 37.0  # fmt: skip


async def test_count_items_filters_security_events(store: TelemetryStore) -> None:
    events = [
        SecurityEventItem(
            time=T0 + i, event_type=kind, severity=Severity.MEDIUM, details="", client_ip=None
        )
        for i, kind in enumerate(["RateLimit"] * 7 + ["SqlInjection"] * 2)
    ]
    await store.write(TelemetryBatch(items=events))

    assert await store.query.count_items(
        ItemKind.SECURITY_EVENT, T0, T0 + 60, where={"event_type": "RateLimit"}
    ) == 7.0  # fmt: skip
    assert await store.query.count_items(
        ItemKind.SECURITY_EVENT, T0, T0 + 60, where={"client_ip": None}
    ) == 9.0  # fmt: skip


async def test_bad_item_queries_name_the_argument(store: TelemetryStore) -> None:
    with pytest.raises(QueryError) as caught:
        await store.query.count_items("metric", T0, T0 + 1)
    assert caught.value.field == "kind"
    with pytest.raises(QueryError) as caught:
        await store.query.count_items(ItemKind.REQUEST, T0, T0 + 1, where={"nope": 1})
    assert caught.value.field == "where"
    with pytest.raises(QueryError) as caught:
        await store.query.recent(ItemKind.REQUEST, 0)
    assert caught.value.field == "limit"
    with pytest.raises(QueryError) as caught:
        await store.query.count_items(ItemKind.REQUEST, math.nan, T0)
    assert caught.value.field == "start"


async def test_recent_returns_the_newest_items_first(store: TelemetryStore) -> None:
    await store.write(TelemetryBatch(items=_requests()))

    latest = await store.query.recent(ItemKind.REQUEST, 3)
    since = await store.query.recent(ItemKind.REQUEST, 100, since=T0 + 490)
    failed = await store.query.recent(ItemKind.REQUEST, 2, where={"success": False})

    assert [row["ts"] for row in latest] == [T0 + 499, T0 + 498, T0 + 497]
    assert len(since) == 10
    assert [row["ts"] for row in failed] == [T0 + 480, T0 + 460]
    assert all(row["status_code"] == 500 and row["success"] is False for row in failed)
