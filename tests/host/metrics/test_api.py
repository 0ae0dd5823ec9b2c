"""The admin metrics API through the real app: auth, system vitals, series of recorded values.

Series tests run twice: with the real SQLite telemetry store (``source: store``)
and without a store (``source: live``, the in-memory aggregates); the numbers
must be the same.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts import Account, MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import ConfigError, Role, Settings, load_settings
from host.metrics.times import T0, iso

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SERIES = "/api/metrics/series"
SYSTEM = "/api/metrics/system"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The store's file, no rate limit, and what a test asks for (indirect parametrize)."""
    return {
        "connection_strings": {"telemetry_store": f"sqlite+aiosqlite:///{tmp_path}/telemetry.db"},
        "security": {"rate_limit_enabled": False},
        **getattr(request, "param", {}),
    }


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert set(body) == {"error", "message", "request_id"}
    assert body["request_id"]
    return body


async def series(client: httpx.AsyncClient, admin: Account, **params: str) -> dict[str, Any]:
    response = await client.get(SERIES, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def values(body: dict[str, Any]) -> list[float | None]:
    return [point["value"] for point in body["points"]]


# -- access ---------------------------------------------------------------------------------


async def test_admins_only(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    """Every metrics route: 401 without valid credentials, 403 for a user, 200 for admins."""
    user: Account = await make_account(Role.USER)
    admin: Account = await make_account(Role.ADMIN)
    super_admin: Account = await make_account(Role.SUPER_ADMIN)
    routes = ("dashboard", "system", "performance", "security", "business")
    for path in (*(f"/api/metrics/{name}" for name in routes), f"{SERIES}?name=x"):
        anonymous = await client.get(path)
        assert_error(anonymous, 401, "unauthorized")
        assert anonymous.headers["www-authenticate"] == "Bearer"
        forged = await client.get(path, headers={"Authorization": "Bearer nope"})
        assert_error(forged, 401, "unauthorized")
        assert forged.headers["www-authenticate"] == "Bearer"
        assert_error(await client.get(path, headers=user.headers), 403, "forbidden")
        assert (await client.get(path, headers=admin.headers)).status_code == 200
        assert (await client.get(path, headers=super_admin.headers)).status_code == 200


# -- /api/metrics/system --------------------------------------------------------------------


async def test_system_vitals(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    first = await client.get(SYSTEM, headers=admin.headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["pid"] == os.getpid()
    assert body["python"] == {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    # Monitoring started in the app's lifespan, at the fake clock's time.
    assert body["started_at"] == T0.isoformat()
    assert body["uptime_seconds"] == 0.0
    memory = body["memory"]
    assert memory["rss_bytes"] > 10 * 1024 * 1024  # a Python process with FastAPI loaded
    assert [g["generation"] for g in memory["gc"]] == [0, 1, 2]
    for generation in memory["gc"]:
        assert set(generation) == {"generation", "collections", "collected", "uncollectable"}
        assert generation["collections"] >= 0
    assert memory["gc"][0]["collections"] > 0  # importing the app alone runs gen 0
    assert body["threads"] >= 1
    assert body["open_fds"] >= 3  # stdin, stdout, stderr at least (POSIX here)
    assert body["cpu"]["percent"] is None  # the first call only starts the measure
    assert body["cpu"]["total_seconds"] > 0

    clock.advance(90)
    second = (await client.get(SYSTEM, headers=admin.headers)).json()
    assert second["uptime_seconds"] == 90.0
    assert second["started_at"] == T0.isoformat()
    assert second["cpu"]["percent"] >= 0.0
    assert second["cpu"]["total_seconds"] >= body["cpu"]["total_seconds"]


async def test_system_refuses_parameters(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"{SYSTEM}?verbose=1", headers=admin.headers)
    body = assert_error(response, 422, "validation_error")
    assert body["message"] == "verbose: unknown parameter"


# -- /api/metrics/series: values ------------------------------------------------------------


async def record_orders(monitoring: Monitoring, clock: FakeClock) -> None:
    """Minute 0: eu 1..10 and us 100, 200; minute 1: eu 10..50; minute 2: nothing."""
    track = monitoring.client.track_metric
    for value in range(1, 11):
        track("orders.value", float(value), {"region": "eu"})
    track("orders.value", 100.0, {"region": "us"})
    track("orders.value", 200.0, {"region": "us"})
    assert await monitoring.pipeline.flush()
    clock.advance(60)
    for tens in range(1, 6):
        track("orders.value", tens * 10.0, {"region": "eu"})
    assert await monitoring.pipeline.flush()
    clock.advance(120)  # now: 00:03:00


async def test_counts_sums_and_extremes_per_step(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    window = {"name": "orders.value", "step": "1m", "start": iso(0), "end": iso(180)}

    body = await series(client, admin, **window, agg="count")
    assert body["source"] == ("store" if monitoring.store is not None else "live")
    assert {k: body[k] for k in ("name", "agg", "step", "start", "end", "dims")} == {
        "name": "orders.value",
        "agg": "count",
        "step": 60.0,
        "start": iso(0),
        "end": iso(180),
        "dims": {},
    }
    assert body["points"] == [
        {"t": iso(0), "value": 12.0},
        {"t": iso(60), "value": 5.0},
        {"t": iso(120), "value": 0.0},
    ]
    assert values(await series(client, admin, **window, agg="sum")) == [355.0, 150.0, 0.0]
    assert values(await series(client, admin, **window, agg="avg")) == [355 / 12, 30.0, None]
    assert values(await series(client, admin, **window, agg="min")) == [1.0, 10.0, None]
    assert values(await series(client, admin, **window, agg="max")) == [200.0, 50.0, None]
    assert values(await series(client, admin, **window, agg="rate_per_second")) == [
        12 / 60,
        5 / 60,
        0.0,
    ]
    assert values(await series(client, admin, **window, agg="rate_per_minute")) == pytest.approx(
        [12.0, 5.0, 0.0]
    )


async def test_dims_filter_series(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    window = {"name": "orders.value", "step": "60s", "start": "3m", "agg": "sum"}
    eu = await series(client, admin, **window, dims="region=eu")
    assert eu["dims"] == {"region": "eu"}
    assert values(eu) == [55.0, 150.0, 0.0]
    assert values(await series(client, admin, **window, dims=" region = us ")) == [300.0, 0, 0]
    # a dimension no series has: a known metric without data, every step answered
    assert values(await series(client, admin, **window, dims="region=asia")) == [0.0, 0.0, 0.0]


async def test_a_last_partial_step_and_an_unaligned_start(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    # start 00:00:20 rounds down to 00:00:00; end 00:01:30 cuts the second step to 30 s
    body = await series(
        client, admin, name="orders.value", agg="rate_per_second", step="PT1M",
        start=iso(20), end=iso(90),
    )  # fmt: skip
    assert (body["start"], body["end"]) == (iso(0), iso(90))
    assert values(body) == [12 / 60, 5 / 30]


async def test_percentiles_are_within_the_sketch_error(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    for value in range(1, 1001):
        monitoring.client.track_metric("latency.ms", float(value))
    assert await monitoring.pipeline.flush()
    clock.advance(60)
    for value in range(1, 101):
        monitoring.client.track_metric("latency.ms", float(value) * 10)
    assert await monitoring.pipeline.flush()
    clock.advance(60)
    window = {"name": "latency.ms", "step": "1m", "start": iso(0), "end": iso(120)}
    expected = {
        "p50": (500, 500),
        "p90": (900, 900),
        "p95": (950, 950),
        "p99": (990, 990),
    }
    for agg, (first, second) in expected.items():
        got = values(await series(client, admin, **window, agg=agg))
        assert got[0] == pytest.approx(first, rel=0.01), agg
        assert got[1] == pytest.approx(second, rel=0.01), agg
    # one step over both minutes: the sketches merge; of the 1,100 values, the 550th
    # is 500 (500 of the first minute and 50 of the second are at most 500)
    merged = values(
        await series(client, admin, name="latency.ms", agg="p50", step="2m", start=iso(0))
    )
    assert merged == [pytest.approx(500, rel=0.01)]


async def test_requests_through_the_app_are_charted(
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
) -> None:
    user: Account = await make_account(Role.USER)
    for _ in range(7):
        assert (await client.get("/api/personality", headers=user.headers)).status_code == 200
    for _ in range(3):
        missing = await client.get("/api/personality/999999", headers=user.headers)
        assert missing.status_code == 404
    assert await monitoring.pipeline.flush()
    clock.advance(1)  # the window ends before now: values recorded at now are in the next one
    route = {"name": "http.server.duration", "agg": "count", "start": iso(0), "step": "5m"}
    ok = await series(client, admin, **route, dims="route=GET /api/personality,status_code=200")
    assert values(ok) == [7.0]
    failed = await series(client, admin, **route, dims="route=GET /api/personality/{profile_id}")
    assert values(failed) == [3.0]
    assert values(await series(client, admin, **route, dims="success=false")) == [3.0]
    # a value ending in * is a prefix: every 4xx, every answer of one route family
    assert values(await series(client, admin, **route, dims="status_code=4*")) == [3.0]
    assert values(await series(client, admin, **route, dims="route=GET /api/pers*")) == [10.0]
    assert values(await series(client, admin, **route, dims="status_code=5*")) == [0.0]


async def test_unknown_metric_is_an_empty_series(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    body = await series(client, admin, name="no.such.metric", agg="count", step="1m", start="3m")
    assert body["points"] == []
    assert (body["name"], body["start"], body["end"]) == ("no.such.metric", iso(0), iso(180))


async def test_defaults(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    # the last hour, averaged, 30 s steps (120 points: at most ~300)
    body = await series(client, admin, name="orders.value")
    assert (body["agg"], body["step"]) == ("avg", 30.0)
    assert (body["start"], body["end"]) == (iso(180 - 3600), iso(180))
    assert len(body["points"]) == 120
    assert values(body)[-6:] == [355 / 12, None, 30.0, None, None, None]
    # a week: hourly steps, 168 points
    week = await series(client, admin, name="orders.value", agg="count", start="7d")
    assert week["step"] == 3600.0
    assert len(week["points"]) == 169  # the start rounds down to the hour: one more
    assert sum(v or 0 for v in values(week)) == 17


async def test_the_points_cap(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    # 10,000 s in 10 s steps: exactly the cap of 1,000 points
    end = iso(180)
    at_cap = await series(client, admin, name="orders.value", agg="count", step="10s",
                          start=iso(180 - 10_000), end=end)  # fmt: skip
    assert len(at_cap["points"]) == 1000
    assert sum(v or 0 for v in values(at_cap)) == 17
    over = await client.get(
        SERIES,
        params={"name": "orders.value", "step": "10s", "start": iso(180 - 10_010), "end": end},
        headers=admin.headers,
    )
    body = assert_error(over, 422, "validation_error")
    assert body["message"] == "step: 10s gives 1001 points, more than the maximum (1000)"


# -- /api/metrics/series: refusals ----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "name: required"),
        ("name=", "name: required"),
        (f"name={'x' * 201}", "name: longer than 200 characters"),
        ("name=a&agg=median", "agg: 'median' is not one of avg, sum, count, rate_per_second, "
         "rate_per_minute, min, max, p50, p90, p95, p99"),
        ("name=a&agg=ratio", "agg: 'ratio' is not one of avg, sum, count, rate_per_second, "
         "rate_per_minute, min, max, p50, p90, p95, p99"),
        ("name=a&start=abc", "start: not a timestamp or duration: 'abc'"),
        ("name=a&end=abc", "end: not a timestamp or duration: 'abc'"),
        ("name=a&start=1h&end=2h", "start: must be before end"),
        ("name=a&start=8d",
         "start: the range from start to end (8d) is longer than the maximum (7d)"),
        ("name=a&step=abc",
         "step: not a duration: 'abc' (use e.g. '30s', '5m', '1h30m', 'PT5M' or seconds)"),
        ("name=a&step=5s", "step: 5s is finer than the metrics' resolution (10s)"),
        ("name=a&step=0s", "step: 0s is finer than the metrics' resolution (10s)"),
        ("name=a&start=7d&step=10s",
         "step: 10s gives 60480 points, more than the maximum (1000)"),
        ("name=a&dims=route", "dims: 'route' is not key=value"),
        ("name=a&dims=region=eu,region=us", "dims: 'region' is given more than once"),
        ("name=a&dims==eu", "dims: '' is not a dimension name"),
        ("name=a&dims=a b=1", "dims: 'a b' is not a dimension name"),
        ("name=a&dims=region=eu,", "dims: '' is not key=value"),
        ("name=a&aggregation=sum", "aggregation: unknown parameter"),
        ("name=a&name=b", "name: given more than once"),
    ],
)  # fmt: skip
async def test_refusals_name_the_parameter(
    client: httpx.AsyncClient, admin: Account, query: str, message: str
) -> None:
    response = await client.get(f"{SERIES}?{query}", headers=admin.headers)
    body = assert_error(response, 422, "validation_error")
    assert body["message"] == message


@pytest.mark.parametrize(
    "settings_overrides",
    [{"dashboard": {"max_window": 86400, "max_points": 50}}],
    indirect=True,
)
async def test_the_limits_are_settings(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    await record_orders(monitoring, clock)
    # the default step keeps under the cap: 2 min steps for the last hour, whose start
    # (00:03 - 1h) rounds down to 23:02, giving 31 points
    body = await series(client, admin, name="orders.value", agg="count")
    assert (body["step"], len(body["points"])) == (120.0, 31)
    assert body["start"] == iso(-3480)
    assert values(body)[-2:] == [17.0, 0.0]
    for query, message in [
        ("start=2d", "start: the range from start to end (2d) is longer than the maximum (1d)"),
        ("step=1m", "step: 1m gives 60 points, more than the maximum (50)"),
    ]:
        response = await client.get(f"{SERIES}?name=a&{query}", headers=admin.headers)
        assert assert_error(response, 422, "validation_error")["message"] == message


@pytest.mark.parametrize(
    ("section", "key"),
    [({"max_points": 5}, "max_points"), ({"max_window": 0}, "max_window"), ({"x": 1}, "x")],
)
def test_bad_dashboard_settings_stop_the_start(
    settings: Settings, section: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"dashboard\.{key}"):
        load_settings(**{**settings.model_dump(mode="python"), "dashboard": section})
