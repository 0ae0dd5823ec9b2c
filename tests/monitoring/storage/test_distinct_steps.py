"""Distinct values of a property, in a window and per step (the active users of a window)."""

from __future__ import annotations

import pytest

from digitalme.monitoring.storage import QueryError, TelemetryStore
from digitalme.monitoring.telemetry.items import ItemKind, RequestItem
from digitalme.monitoring.telemetry.sinks import TelemetryBatch

T0 = 1_767_225_600.0
USER = "properties.AuthenticatedUserId"

# (seconds after T0, user or None for an anonymous request)
REQUESTS: list[tuple[float, str | None]] = [
    (0, "1"),
    (10, "1"),
    (20, "2"),
    (299, "3"),  # the last moment of the first 5-minute step
    (300, "1"),  # the first moment of the second
    (310, None),
    (400, "2"),
    (650, "4"),  # in the third step, which the 600 s window leaves out
]


@pytest.fixture
async def request_store(store: TelemetryStore) -> TelemetryStore:
    items = [
        RequestItem(
            time=T0 + at,
            properties={} if user is None else {"AuthenticatedUserId": user},
            weight=2.0,  # sampled: distinct counts ignore weights
            name="GET /api/personality",
            duration_ms=1.0,
            status_code=200,
            success=True,
        )
        for at, user in REQUESTS
    ]
    await store.write(TelemetryBatch(items=items))
    return store


async def test_distinct_property_values_in_a_window(request_store: TelemetryStore) -> None:
    distinct = request_store.query.count_distinct
    assert await distinct(ItemKind.REQUEST, USER, T0, T0 + 600) == 3  # no user is no value
    assert await distinct(ItemKind.REQUEST, USER, T0, T0 + 700) == 4
    assert await distinct(ItemKind.REQUEST, USER, T0 + 300, T0 + 600) == 2
    assert await distinct(ItemKind.REQUEST, "properties.Nobody", T0, T0 + 700) == 0
    assert await distinct(ItemKind.REQUEST, "name", T0, T0 + 700) == 1  # columns still work


async def test_distinct_values_per_step_count_back_from_the_end(
    request_store: TelemetryStore,
) -> None:
    steps = request_store.query.count_distinct_by_step
    assert await steps(ItemKind.REQUEST, USER, 300, T0, T0 + 600) == [(T0, 3), (T0 + 300, 2)]
    # an end inside a step: the newest step is whole, the oldest is cut at start
    assert await steps(ItemKind.REQUEST, USER, 300, T0, T0 + 700) == [
        (T0, 2),  # [T0, T0 + 100): 1, 2
        (T0 + 100, 2),  # [T0 + 100, T0 + 400): 3, 1 (the user at 400 is in the next)
        (T0 + 400, 2),  # [T0 + 400, T0 + 700): 2, 4
    ]
    assert await steps(ItemKind.REQUEST, USER, 300, T0 + 1000, T0 + 1600) == [
        (T0 + 1000, 0),
        (T0 + 1300, 0),
    ]
    assert await steps(ItemKind.REQUEST, USER, 3600, T0, T0 + 60) == [(T0, 2)]


async def test_bad_distinct_queries_name_the_argument(request_store: TelemetryStore) -> None:
    query = request_store.query
    for call, field in [
        (query.count_distinct(ItemKind.REQUEST, "properties.", T0, T0 + 1), "column"),
        (query.count_distinct(ItemKind.REQUEST, "properties", T0, T0 + 1), "column"),
        (query.count_distinct_by_step(ItemKind.REQUEST, USER, 0, T0, T0 + 1), "step"),
        (query.count_distinct_by_step(ItemKind.REQUEST, USER, 1, T0, T0 + 2 * 86_400), "step"),
        (query.count_distinct_by_step(ItemKind.REQUEST, USER, 1, T0 + 1, T0), "end"),
    ]:
        with pytest.raises(QueryError) as caught:
            await call
        assert caught.value.field == field
