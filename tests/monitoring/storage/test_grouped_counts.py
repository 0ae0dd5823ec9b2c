"""Grouped and distinct item counts: per event type, per client IP, distinct IPs in a window."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from digitalme.monitoring.storage import QueryError, TelemetryStore
from digitalme.monitoring.telemetry.items import ItemKind, RequestItem, SecurityEventItem, Severity
from digitalme.monitoring.telemetry.sinks import TelemetryBatch

T0 = 1_767_225_600.0

# (seconds after T0, event type, client IP)
EVENTS: list[tuple[float, str, str | None]] = [
    (0, "RateLimit", "203.0.113.5"),
    (1, "RateLimit", "203.0.113.5"),
    (2, "RateLimit", "203.0.113.5"),
    (3, "RateLimit", "203.0.113.6"),
    (4, "SqlInjection", "203.0.113.5"),
    (5, "SqlInjection", "198.51.100.7"),
    (6, "XssScript", "198.51.100.7"),
    (7, "LoginFailed", None),
    (8, "LoginFailed", "192.0.2.1"),
    (100, "RateLimit", "192.0.2.99"),  # outside [T0, T0 + 60)
]


@pytest.fixture
async def security_store(store: TelemetryStore) -> TelemetryStore:
    items = [
        SecurityEventItem(
            time=T0 + at, event_type=kind, severity=Severity.MEDIUM, details="", client_ip=ip
        )
        for at, kind, ip in EVENTS
    ]
    await store.write(TelemetryBatch(items=items))
    return store


async def test_counts_by_one_column_largest_first(security_store: TelemetryStore) -> None:
    by_type = await security_store.query.count_by(
        ItemKind.SECURITY_EVENT, ["event_type"], T0, T0 + 60
    )
    assert by_type == [
        (("RateLimit",), 4.0),
        (("LoginFailed",), 2.0),
        (("SqlInjection",), 2.0),
        (("XssScript",), 1.0),
    ]
    by_ip = await security_store.query.count_by("security_event", ["client_ip"], T0, T0 + 60)
    assert by_ip == [
        (("203.0.113.5",), 4.0),
        (("198.51.100.7",), 2.0),
        (("192.0.2.1",), 1.0),
        (("203.0.113.6",), 1.0),
        ((None,), 1.0),  # ties in value order, NULL last
    ]
    top = await security_store.query.count_by(
        ItemKind.SECURITY_EVENT, ["client_ip"], T0, T0 + 60, limit=2
    )
    assert top == [(("203.0.113.5",), 4.0), (("198.51.100.7",), 2.0)]


async def test_counts_by_two_columns_with_filters(security_store: TelemetryStore) -> None:
    pairs = await security_store.query.count_by(
        ItemKind.SECURITY_EVENT,
        ["client_ip", "event_type"],
        T0,
        T0 + 60,
        where={"client_ip": ["203.0.113.5", "198.51.100.7"]},
    )
    assert pairs == [
        (("203.0.113.5", "RateLimit"), 3.0),
        (("198.51.100.7", "SqlInjection"), 1.0),
        (("198.51.100.7", "XssScript"), 1.0),
        (("203.0.113.5", "SqlInjection"), 1.0),
    ]
    only = await security_store.query.count_by(
        ItemKind.SECURITY_EVENT, ["event_type"], T0, T0 + 60, where={"client_ip": None}
    )
    assert only == [(("LoginFailed",), 1.0)]
    # the window is [start, end): T0 + 100 is counted only when the window reaches it
    late = await security_store.query.count_by(
        ItemKind.SECURITY_EVENT, ["event_type"], T0 + 60, T0 + 101
    )
    assert late == [(("RateLimit",), 1.0)]
    assert await security_store.query.count_by(
        ItemKind.SECURITY_EVENT, ["event_type"], T0 + 101, T0 + 200
    ) == []  # fmt: skip


async def test_counts_are_weighted(store: TelemetryStore) -> None:
    requests = [
        RequestItem(
            time=T0 + i, weight=weight, name=name, duration_ms=1.0, status_code=200, success=True
        )
        for i, (name, weight) in enumerate([("GET /a", 2.0), ("GET /a", 2.0), ("GET /b", 5.0)])
    ]
    await store.write(TelemetryBatch(items=requests))
    assert await store.query.count_by(ItemKind.REQUEST, ["name"], T0, T0 + 60) == [
        (("GET /b",), 5.0),
        (("GET /a",), 4.0),
    ]


async def test_distinct_values_in_a_window(security_store: TelemetryStore) -> None:
    distinct = security_store.query.count_distinct
    kind = ItemKind.SECURITY_EVENT
    assert await distinct(kind, "client_ip", T0, T0 + 60, where={"event_type": "RateLimit"}) == 2
    assert await distinct(kind, "client_ip", T0, T0 + 60) == 4  # NULL is not a value
    assert await distinct(kind, "client_ip", T0, T0 + 200) == 5
    assert await distinct(kind, "event_type", T0 + 200, T0 + 300) == 0


async def test_bad_grouped_queries_name_the_argument(security_store: TelemetryStore) -> None:
    query = security_store.query
    kind = ItemKind.SECURITY_EVENT
    cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: query.count_by(kind, ["properties"], T0, T0 + 1), "group_by"),
        (lambda: query.count_by(kind, ["nope"], T0, T0 + 1), "group_by"),
        (lambda: query.count_by(kind, [], T0, T0 + 1), "group_by"),
        (lambda: query.count_by(kind, ["client_ip"], T0, T0 + 1, limit=0), "limit"),
        (lambda: query.count_by("metric", ["client_ip"], T0, T0 + 1), "kind"),
        (lambda: query.count_by(kind, ["client_ip"], T0 + 1, T0), "end"),
        (lambda: query.count_distinct(kind, "nope", T0, T0 + 1), "column"),
        (lambda: query.count_distinct(kind, "ts", T0, T0 + 1, where={"x": 1}), "where"),
    ]
    for call, field in cases:
        with pytest.raises(QueryError) as caught:
            await call()
        assert caught.value.field == field
