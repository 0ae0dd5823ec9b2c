"""``GET /api/metrics/performance`` through the real app, on known traffic.

Like the series tests, each runs with the real SQLite telemetry store
(``source: store``) and without a store (``source: live``); the figures must be
the same. Values are recorded at a fake time and flushed at once, so that each
lands in the minute the test means; the route's own traffic is recorded later,
outside the windows asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from accounts import Account, MakeAccount
from digitalme.monitoring.dashboard.figures import HostFigures
from digitalme.monitoring.dashboard.performance import PerformanceReader, count_at_most
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import ConfigError, DashboardSettings, Role, Settings, load_settings
from host.metrics.times import T0, iso

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PERFORMANCE = "/api/metrics/performance"
SLOW_QUERY_MS = 50.0


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The store's file, no rate limit, a 50 ms slow query (Apdex: the default 500 ms) and
    what a test asks for (indirect parametrize) in ``dashboard``."""
    return {
        "connection_strings": {"telemetry_store": f"sqlite+aiosqlite:///{tmp_path}/telemetry.db"},
        "security": {"rate_limit_enabled": False},
        "dashboard": {"slow_query_ms": SLOW_QUERY_MS, **getattr(request, "param", {})},
    }


async def performance(
    client: httpx.AsyncClient, admin: Account, start: float, end: float
) -> dict[str, Any]:
    response = await client.get(
        PERFORMANCE, params={"start": iso(start), "end": iso(end)}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def source(monitoring: Monitoring) -> str:
    return "store" if monitoring.store is not None else "live"


# -- access and parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("window=1h", "window: unknown parameter"),
        ("start=1h&start=2h", "start: given more than once"),
        ("start=abc", "start: not a timestamp or duration: 'abc'"),
        ("start=1h&end=2h", "start: must be before end"),
        ("start=8d", "start: the range from start to end (8d) is longer than the maximum (7d)"),
    ],
)
async def test_refusals_name_the_parameter(
    client: httpx.AsyncClient, admin: Account, query: str, message: str
) -> None:
    response = await client.get(f"{PERFORMANCE}?{query}", headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert response.json()["message"] == message


@pytest.mark.parametrize("key", ["apdex_threshold_ms", "slow_query_ms"])
@pytest.mark.parametrize("value", [0, -1])
def test_thresholds_must_be_positive(settings: Settings, key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"dashboard\.{key}"):
        load_settings(**{**settings.model_dump(mode="python"), "dashboard": {key: value}})


@pytest.mark.usefixtures("database_url")  # the module's parametrize
def test_threshold_defaults() -> None:
    dashboard = DashboardSettings()
    assert (dashboard.apdex_threshold_ms, dashboard.slow_query_ms) == (500.0, 100.0)


# -- requests: rates, response times, errors, Apdex -----------------------------------------

# 500 requests with the default Apdex threshold T = 500 ms:
ERRORS = [50.0] * 25  # answered 500: frustrated however fast
SATISFIED = [float(ms) for ms in range(1, 301)]  # <= T (ten of them answered 404)
TOLERATING = [1000.0 + 10 * i for i in range(1, 101)]  # 1010 .. 2000 = 4T
FRUSTRATED = [2500.0 + 10 * i for i in range(1, 76)]  # 2510 .. 3250
PER_MINUTE = (200, 250, 50)  # minutes 0, 1 and 2; none in minute 3


def known_requests() -> list[tuple[float, int]]:
    """Every known request as (duration ms, status code), in recording order."""
    requests = [(ms, 500) for ms in ERRORS]
    requests += [(ms, 404 if ms <= 10 else 200) for ms in SATISFIED]
    requests += [(ms, 200) for ms in TOLERATING + FRUSTRATED]
    assert len(requests) == 500
    return requests


async def track_minutes(monitoring: Monitoring, clock: FakeClock) -> list[float]:
    requests = known_requests()
    position = 0
    for minute, count in enumerate(PER_MINUTE):
        assert clock.time() == T0.timestamp() + 60 * minute
        for ms, status in requests[position : position + count]:
            monitoring.client.track_request(
                "GET /test/perf", clock.now(), ms / 1000, status, status < 400
            )
        position += count
        assert await monitoring.pipeline.flush()
        clock.advance(60)
    clock.advance(300 - 60 * len(PER_MINUTE))  # now: 00:05:00, after every window asked
    return sorted(ms for ms, _ in requests)


def lower_rank(values: list[float], q: float) -> float:
    """The sketch's definition: the first value whose cumulative count exceeds q (n - 1)."""
    return values[int(q * (len(values) - 1))]


async def test_requests_errors_percentiles_and_apdex(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    assert await monitoring.pipeline.flush()  # the admin's sign-up queries, at 00:00:00
    durations = await track_minutes(monitoring, clock)

    body = await performance(client, admin, 0, 180)
    assert body["window"] == {"start": iso(0), "end": iso(180)}
    assert body["source"] == source(monitoring)
    assert body["requests"] == 500
    assert body["errors"] == 25
    assert body["error_rate"] == 0.05
    assert body["requests_per_minute"] == {
        "current": 50.0,  # minute 2, the last whole one
        "average": pytest.approx(500 / 3),
        "peak": 250.0,
    }
    times = body["response_times"]
    assert times["average"] == pytest.approx(sum(durations) / 500)
    for key, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        assert times[key] == pytest.approx(lower_rank(durations, q), rel=0.01), key
    assert times["p50"] == pytest.approx(225, rel=0.01)  # 25 errors at 50 ms, then 1, 2, ...
    assert body["apdex"] == {
        "threshold_ms": 500.0,
        "score": (300 + 100 / 2) / 500,
        "satisfied": 300,
        "tolerating": 100,
        "frustrated": 100,  # 75 slow and 25 answered 500
    }

    # A window ending inside minute 3: the last whole minute is still minute 2, and
    # the average is over the 200 s asked for.
    partial = await performance(client, admin, 0, 200)
    assert partial["requests"] == 500
    assert partial["requests_per_minute"] == {
        "current": 50.0,
        "average": pytest.approx(150.0),
        "peak": 250.0,
    }
    # minute 1 alone: its 250 requests, none of the errors (all in minute 0)
    second = await performance(client, admin, 60, 120)
    assert (second["requests"], second["errors"], second["error_rate"]) == (250, 0, 0.0)
    assert second["requests_per_minute"] == {"current": 250.0, "average": 250.0, "peak": 250.0}
    # minutes 2 and 3: the last whole minute had no request
    late = await performance(client, admin, 120, 240)
    assert late["requests_per_minute"] == {"current": 0.0, "average": 25.0, "peak": 50.0}
    # less than a whole minute (30 s inside minute 1): no current or peak minute
    short = await performance(client, admin, 70, 100)
    assert short["requests_per_minute"]["current"] is None
    assert short["requests_per_minute"]["peak"] is None


@pytest.mark.parametrize("settings_overrides", [{"apdex_threshold_ms": 900}], indirect=True)
async def test_the_apdex_threshold_is_a_setting(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    assert await monitoring.pipeline.flush()
    await track_minutes(monitoring, clock)
    body = await performance(client, admin, 0, 180)
    # T = 900: 1010 .. 2000 tolerating, 2510 .. 3250 too (<= 3600); only errors frustrated
    assert body["apdex"] == {
        "threshold_ms": 900.0,
        "score": (300 + 175 / 2) / 500,
        "satisfied": 300,
        "tolerating": 175,
        "frustrated": 25,
    }


async def test_a_window_without_traffic_invents_nothing(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await track_minutes(monitoring, clock)
    body = await performance(client, admin, -3600, -1800)
    assert body == {
        "window": {"start": iso(-3600), "end": iso(-1800)},
        "source": source(monitoring),
        "requests_per_minute": {"current": 0.0, "average": 0.0, "peak": 0.0},
        "response_times": {"average": None, "p50": None, "p95": None, "p99": None},
        "requests": 0,
        "errors": 0,
        "error_rate": None,
        "apdex": {
            "threshold_ms": 500.0,
            "score": None,
            "satisfied": 0,
            "tolerating": 0,
            "frustrated": 0,
        },
        "personality_generation": {
            "average_ms": None,
            "success_rate": None,
            "per_hour": 0.0,
            "count": 0,
        },
        "database_queries": {
            "count": 0,
            "average_ms": None,
            "slow": 0,
            "pool": body["database_queries"]["pool"],  # the pool is now, not the window's
        },
    }
    assert body["database_queries"]["pool"] is not None


async def test_nothing_recorded_yet(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring
) -> None:
    # no request has been recorded at all (no series yet): still no invented figure
    body = await performance(client, admin, -600, 0)
    assert body["requests"] == 0
    assert body["requests_per_minute"] == {"current": 0.0, "average": 0.0, "peak": 0.0}
    assert body["response_times"]["p50"] is None
    assert body["apdex"]["score"] is None


# -- personality generation -----------------------------------------------------------------


async def test_personality_generation(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    for _ in range(8):
        monitoring.performance.record_personality_generation(2.0, True, "claude", user_id=7)
    for _ in range(2):
        monitoring.performance.record_personality_generation(4.0, False, "claude", user_id=7)
    assert await monitoring.pipeline.flush()
    clock.advance(601)
    body = await performance(client, admin, 0, 600)
    assert body["personality_generation"] == {
        "average_ms": pytest.approx((8 * 2000 + 2 * 4000) / 10),
        "success_rate": 0.8,
        "per_hour": pytest.approx(60.0),  # 10 in 10 minutes
        "count": 10,
    }
    later = await performance(client, admin, 300, 600)
    assert later["personality_generation"]["count"] == 0
    assert later["personality_generation"]["average_ms"] is None


# -- database queries and the pool -----------------------------------------------------------


async def test_database_queries_made_through_the_app(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
) -> None:
    user: Account = await make_account(Role.USER)
    assert await monitoring.pipeline.flush()  # sign-up queries: minute 0
    clock.advance(60)
    engine = app.state.host.database.engine.sync_engine
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert (await client.get("/api/personality", headers=user.headers)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert await monitoring.pipeline.flush()  # minute 1
    clock.advance(60)
    assert statements >= 5

    body = await performance(client, admin, 60, 120)
    queries = body["database_queries"]
    assert queries["count"] == statements
    assert queries["average_ms"] > 0
    assert 0 <= queries["slow"] <= statements
    pool = queries["pool"]
    assert set(pool) == {"in_use", "idle", "size", "overflow"}
    assert pool["size"] == engine.pool.size() > 0
    assert 0 <= pool["in_use"] <= pool["size"] + pool["overflow"]
    assert pool["idle"] >= 1  # the requests' connections went back to the pool
    assert pool["overflow"] >= 0


async def test_slow_queries_over_the_setting(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    assert await monitoring.pipeline.flush()  # the admin's sign-up queries, at 00:00:00
    clock.advance(60)
    durations = [0.010] * 7 + [0.045, 0.055] + [0.5] * 3  # seconds; the threshold is 50 ms
    for seconds in durations:
        monitoring.client.track_dependency(
            "SQL", "SELECT users", "SELECT * FROM users", clock.now(), seconds, True,
            target="sqlite/host.db",
        )  # fmt: skip
    # other dependencies are not database queries
    monitoring.client.track_dependency("HTTP", "POST /v1/messages", "", clock.now(), 9.0, True)
    assert await monitoring.pipeline.flush()
    clock.advance(60)
    body = await performance(client, admin, 60, 120)
    assert body["database_queries"] | {"pool": None} == {
        "count": 12,
        "average_ms": pytest.approx(sum(durations) * 1000 / 12),
        "slow": 4,  # 55 ms and the three of 500 ms
        "pool": None,
    }


@pytest.mark.usefixtures("app")  # its lifespan starts and stops monitoring (and the store)
async def test_pool_is_null_without_a_source(monitoring: Monitoring, clock: FakeClock) -> None:
    window = TimeWindow(clock.time() - 60, clock.time())
    for figures in (HostFigures(), None):  # nothing registered, or no registry at all
        reader = PerformanceReader(
            monitoring.series, figures, apdex_threshold_ms=500.0, slow_query_ms=100.0
        )
        assert (await reader.read(window))["database_queries"]["pool"] is None


@pytest.mark.usefixtures("database_url")  # the module's parametrize
def test_counting_by_sketch_bin() -> None:
    bucket = Bucket(0.0, 10)
    bucket.add_many([0.0, 10.0, 100.0, 100.0, 105.0, 1000.0])
    assert count_at_most(bucket, 100.0) == 4  # a value equal to the threshold counts
    assert count_at_most(bucket, 102.0) == 4  # 105 is more than a bin (2%) away
    assert count_at_most(bucket, 105.0) == 5
    assert count_at_most(bucket, 5000.0) == 6
    assert count_at_most(bucket, 1e-9) == 1  # the zero
    assert count_at_most(Bucket(0.0, 10), 100.0) == 0
