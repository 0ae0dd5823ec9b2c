"""The public status page over a real store: heartbeats recorded with a fake clock, read
back through the routes mounted on a Starlette app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from structlog.testing import capture_logs

from digitalme.monitoring.testing import FakeClock
from digitalme.monitoring.uptime.maintenance import MaintenanceWindow
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.service import UptimeMonitor
from digitalme.monitoring.uptime.status_page import CONTENT_SECURITY_POLICY, status_routes
from digitalme.monitoring.uptime.status_render import BADGE_GREY, badge_colour, format_percent
from digitalme.monitoring.uptime.store import ComponentState, UptimeStore
from digitalme.settings import StatusPageSettings, UptimeSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # the fake clock's start: midnight UTC
DAY = 86400.0
EVERY = 600.0  # the probe interval of the synthetic heartbeats
UP, DEGRADED, DOWN = BeatStatus.UP, BeatStatus.DEGRADED, BeatStatus.DOWN
CHECKS = ("database", "redis", "payments", "internal-queue")
NOW = T0 + 10 * DAY + 12 * 3600  # 2026-01-11 12:00 UTC

# What a failing check's heartbeat may carry, none of which is public.
SECRET_HOST = "db-primary.corp.internal"
SECRET_MESSAGE = f"GET https://{SECRET_HOST}:8443/charge: connection refused (errno 111)"
SECRETS = (SECRET_HOST, "8443", "refused", "https://", "errno", "1234.5", "internal-queue")

# The long scenario takes seconds to record on PostgreSQL: the document test runs on both
# backends, the tests that only read the same document differently on SQLite.
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

StatusOf = Callable[[str, float], BeatStatus | None]
"""The status of a check's heartbeat at a time since T0 (None: no heartbeat)."""


def history(status_of: StatusOf, start: float, stop: float) -> list[Heartbeat]:
    """Heartbeats of every check every EVERY seconds in [start, stop], and ``overall``,
    the worst of them."""
    beats: list[Heartbeat] = []
    moment = start
    while moment <= stop:
        statuses = {check: status_of(check, moment - T0) for check in CHECKS}
        for check, status in statuses.items():
            if status is not None:
                beats.append(beat(check, moment, status))
        present = [status for status in statuses.values() if status is not None]
        if present:
            worst = DOWN if DOWN in present else DEGRADED if DEGRADED in present else UP
            beats.append(beat(OVERALL, moment, worst, failing=("payments", SECRET_HOST)))
        moment += EVERY
    return beats


def beat(component: str, at: float, status: BeatStatus, failing: tuple[str, ...] = ()) -> Heartbeat:
    down = status is not UP
    return Heartbeat(
        component=component,
        source=Source.INSIDE,
        at=at,
        status=status,
        interval=EVERY,
        duration_ms=1234.5,
        failing=(failing or (component, SECRET_HOST)) if down else (),
        message=SECRET_MESSAGE if down else "",
    )


def scenario(check: str, t: float) -> BeatStatus | None:
    """From 2026-01-07 to 2026-01-11 12:00: database down 30 min on the 8th and all the 9th
    (in a maintenance window), nobody probing for two hours on the 10th, payments down
    since 06:00 today; the hidden queue reports since today only."""
    if 9 * DAY < t < 9 * DAY + 7200 or (check == "internal-queue" and t < 10 * DAY):
        return None
    if check == "database" and (7 * DAY + 3600 < t <= 7 * DAY + 5400 or 8 * DAY < t <= 9 * DAY):
        return DOWN
    if check == "payments" and t > 10 * DAY + 6 * 3600:
        return DOWN
    return UP


def window(
    title: str, start: float, end: float, components: Sequence[str] = ()
) -> MaintenanceWindow:
    return MaintenanceWindow(
        title=title,
        components=list(components),
        starts_at=datetime.fromtimestamp(start, UTC),
        ends_at=datetime.fromtimestamp(end, UTC),
    )


def monitor_of(store: UptimeStore, clock: FakeClock) -> UptimeMonitor:
    return UptimeMonitor(UptimeSettings(), store, clock=clock, probe_interval=EVERY)


async def record(monitor: UptimeMonitor, beats: list[Heartbeat]) -> None:
    # a day of heartbeats per batch, as a prober would have written them over time
    per_batch = int(DAY / EVERY) * (len(CHECKS) + 1)
    for first in range(0, len(beats), per_batch):
        assert await monitor.recorder.record(beats[first : first + per_batch])


def page_settings(**values: Any) -> StatusPageSettings:
    return StatusPageSettings.model_validate(values)


def client_of(monitor: UptimeMonitor, settings: StatusPageSettings) -> httpx.AsyncClient:
    app = Starlette(routes=status_routes(monitor, settings, strict=True))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://status.test")


@pytest.fixture
async def monitor(uptime_store: UptimeStore, clock: FakeClock) -> UptimeMonitor:
    """The scenario recorded, with its maintenance window and two upcoming ones, at NOW."""
    monitor = monitor_of(uptime_store, clock)
    monitor.calendar.put(window("database move", T0 + 8 * DAY, T0 + 9 * DAY, [OVERALL, "database"]))
    monitor.calendar.put(window("Redis upgrade", NOW + 3 * DAY, NOW + 3 * DAY + 1800, ["redis"]))
    monitor.calendar.put(window("queue drain", NOW + DAY, NOW + DAY + 60, ["internal-queue"]))
    await record(monitor, history(scenario, T0 + 6 * DAY, NOW))
    clock.advance(NOW - clock.time())
    return monitor


@pytest.fixture
async def client(monitor: UptimeMonitor) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(monitor, page_settings(hidden=["internal-queue"])) as client:
        yield client


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {component["name"]: component for component in document["components"]}


async def test_the_document_has_exact_uptime_figures_and_day_bars(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/status")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=10"
    document = response.json()
    assert document["title"] == "DigitalMe status"
    assert document["updated_at"] == "2026-01-11T12:00:00+00:00"
    components = by_name(document)
    assert list(components) == ["database", "payments", "redis"]  # internal-queue is hidden
    # since 2026-01-07 (the first heartbeat): 4.5 days, of which one day of maintenance;
    # 30 min down on the 8th and 6600 s unknown (counted as down) on the 10th
    observed = 3.5 * DAY
    week = round((observed - 8400) / observed * 100, 4)
    assert components["database"]["uptime"] == {"24h": 100.0, "7d": week, "30d": week, "90d": week}
    # payments: down for the last 6 hours
    assert components["payments"]["uptime"]["24h"] == 75.0
    assert components["redis"]["uptime"]["7d"] == round((4.5 * DAY - 6600) / (4.5 * DAY) * 100, 4)

    # the day bars: an outage, a day of maintenance, an unknown stretch, days of no data
    days = components["database"]["days"]
    assert len(days) == 90
    assert (days[0]["date"], days[-1]["date"]) == ("2025-10-14", "2026-01-11")
    by_date = {day["date"]: day for day in days}
    # nothing before the first heartbeat (2026-01-07 00:00, which covers nothing itself)
    assert {day["status"] for day in days[:85]} == {"no_data"}
    assert by_date["2026-01-06"] == {
        "date": "2026-01-06",
        "uptime_percent": None,
        "down_seconds": 0.0,
        "unknown_seconds": 0.0,
        "maintenance_seconds": 0.0,
        "status": "no_data",
    }
    assert by_date["2026-01-07"]["status"] == "up"
    assert by_date["2026-01-07"]["uptime_percent"] == 100.0
    assert by_date["2026-01-08"] == {
        "date": "2026-01-08",
        "uptime_percent": round((DAY - 1800) / DAY * 100, 4),
        "down_seconds": 1800.0,
        "unknown_seconds": 0.0,
        "maintenance_seconds": 0.0,
        "status": "down",
    }
    # down all day, but in a maintenance window: neither up nor down
    assert by_date["2026-01-09"] == {
        "date": "2026-01-09",
        "uptime_percent": None,
        "down_seconds": 0.0,
        "unknown_seconds": 0.0,
        "maintenance_seconds": DAY,
        "status": "maintenance",
    }
    assert by_date["2026-01-10"]["status"] == "unknown"
    assert by_date["2026-01-10"]["unknown_seconds"] == 6600.0
    assert by_date["2026-01-10"]["uptime_percent"] == round((DAY - 6600) / DAY * 100, 4)
    assert by_date["2026-01-11"]["status"] == "up"  # today, so far
    payments = components["payments"]
    assert payments["days"][-1]["down_seconds"] == 6 * 3600.0
    assert payments["days"][-1]["uptime_percent"] == 50.0


@SQLITE_ONLY
async def test_statuses_incidents_and_maintenance(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/status")).json()
    assert document["status"] == "partial_outage"
    assert {c["name"]: c["status"] for c in document["components"]} == {
        "database": "operational",
        "payments": "major_outage",
        "redis": "operational",
    }
    # only the public name, the start and the cause
    assert document["incidents"] == [
        {"component": "payments", "started_at": "2026-01-11T06:00:00+00:00", "cause": "down"}
    ]
    # upcoming within 7 days and covering a shown component (not the hidden queue's)
    assert document["maintenance"] == [
        {
            "title": "Redis upgrade",
            "starts_at": "2026-01-14T12:00:00+00:00",
            "ends_at": "2026-01-14T12:30:00+00:00",
            "active": False,
            "components": ["redis"],
        }
    ]


@SQLITE_ONLY
async def test_the_settings_choose_and_name_the_components(monitor: UptimeMonitor) -> None:
    # renamed: only the mapped checks, in the mapping's order
    settings = page_settings(title="Acme", components={"payments": "Payments", "database": "Data"})
    async with client_of(monitor, settings) as client:
        document = (await client.get("/api/status")).json()
    assert document["title"] == "Acme"
    assert [(c["name"], c["status"]) for c in document["components"]] == [
        ("Payments", "major_outage"),
        ("Data", "operational"),
    ]
    assert document["incidents"][0]["component"] == "Payments"
    assert document["maintenance"] == []  # the Redis upgrade covers nothing shown
    assert "redis" not in str(document)

    # several checks under one public name: the worst of them
    settings = page_settings(components={"redis": "Storage", "database": "Storage"})
    async with client_of(monitor, settings) as client:
        [storage] = (await client.get("/api/status")).json()["components"]
    assert storage["name"] == "Storage"
    assert storage["uptime"]["7d"] == round((3.5 * DAY - 8400) / (3.5 * DAY) * 100, 4)  # database
    statuses = {day["date"]: day["status"] for day in storage["days"]}
    assert statuses["2026-01-08"] == "down"
    assert statuses["2026-01-09"] == "maintenance"  # redis was up, database in maintenance

    # hidden checks are left out, with their incidents
    settings = page_settings(hidden=["internal-queue", "payments"])
    async with client_of(monitor, settings) as client:
        document = (await client.get("/api/status")).json()
    assert [c["name"] for c in document["components"]] == ["database", "redis"]
    assert document["status"] == "operational"
    assert document["incidents"] == []


@SQLITE_ONLY
async def test_the_badge_shows_the_30_day_uptime_of_overall(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/status/badge.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "max-age=10"
    # overall: 4.5 days observed less the maintenance day; down 30 min (database),
    # 6600 s unknown and 6 h (payments)
    observed = 3.5 * DAY
    percent = (observed - 1800 - 6600 - 6 * 3600) / observed * 100
    assert f"{percent:.4f}" == "90.0794"
    assert "<title>uptime: 90.07%</title>" in response.text
    assert 'fill="#e05d44"' in response.text  # red: under 95 %


@pytest.mark.parametrize(
    ("percent", "colour", "text"),
    [
        (100.0, "#4c1", "100%"),
        (99.9, "#4c1", "99.90%"),
        (99.8999, "#a4a61d", "99.89%"),  # cut, never rounded up
        (99.0, "#a4a61d", "99.00%"),
        (98.99, "#fe7d37", "98.99%"),
        (95.0, "#fe7d37", "95.00%"),
        (94.9999, "#e05d44", "94.99%"),
        (None, BADGE_GREY, "no data"),
    ],
)
def test_badge_colours_and_text(percent: float | None, colour: str, text: str) -> None:
    assert badge_colour(percent) == colour
    assert format_percent(percent) == text


@SQLITE_ONLY
async def test_the_page_is_html_with_a_strict_policy(monitor: UptimeMonitor) -> None:
    settings = page_settings(title="Acme <status> & co", hidden=["internal-queue"])
    async with client_of(monitor, settings) as client:
        response = await client.get("/status")
        style = await client.get("/status/status.css")
        again = await client.get(
            "/status/status.css", headers={"if-none-match": style.headers["etag"]}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script" not in response.text
    assert "<title>Acme &lt;status&gt; &amp; co</title>" in response.text
    assert 'data-status="partial_outage"' in response.text
    assert response.text.count('class="day ') == 3 * 90
    assert 'class="day d-down" title="2026-01-08: 97.91% uptime, 30 min down"' in response.text
    assert 'class="day d-maintenance" title="2026-01-09: 24 h 0 min maintenance"' in response.text
    assert 'class="day d-no_data" title="2026-01-06: no data"' in response.text
    assert "payments</strong>: outage since" in response.text
    assert "Redis upgrade" in response.text
    assert style.status_code == 200
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert again.status_code == 304


@SQLITE_ONLY
async def test_nothing_internal_leaks(client: httpx.AsyncClient) -> None:
    bodies = [
        (await client.get(path)).text
        for path in ("/api/status", "/status", "/api/status/badge.svg")
    ]
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
    document = (await client.get("/api/status")).json()
    assert {key for i in document["incidents"] for key in i} == {"component", "started_at", "cause"}
    for forbidden in ("failing", "description", "message", "duration", "response_ms", "id"):
        assert f'"{forbidden}"' not in bodies[0]


@pytest.mark.parametrize(
    ("last", "windows", "advance", "expected", "components"),
    [
        ({"database": UP, "redis": UP}, [], 0, "operational", ["operational", "operational"]),
        ({"database": UP, "redis": DEGRADED}, [], 0, "degraded", ["operational", "degraded"]),
        ({"database": DOWN, "redis": UP}, [], 0, "partial_outage", ["major_outage", "operational"]),
        ({"database": DOWN, "redis": DOWN}, [], 0, "major_outage", ["major_outage"] * 2),
        (
            {"database": UP, "redis": UP},
            [["redis"]],
            0,
            "maintenance",
            ["operational", "maintenance"],
        ),
        ({"database": UP, "redis": UP}, [[]], 0, "maintenance", ["maintenance", "maintenance"]),
        ({"database": UP, "redis": UP}, [], 1801, "unknown", ["unknown", "unknown"]),
        ({"database": UP, "redis": UP}, [], 1800, "operational", ["operational", "operational"]),
    ],
)
async def test_the_page_status_follows_the_last_heartbeats(
    uptime_store: UptimeStore,
    clock: FakeClock,
    last: dict[str, BeatStatus],
    windows: list[list[str]],
    advance: float,
    expected: str,
    components: list[str],
) -> None:
    monitor = monitor_of(uptime_store, clock)
    for covered in windows:
        monitor.calendar.put(window("work", T0 + 3000, T0 + 7200, covered))
    beats = [beat(check, T0 + i * EVERY, UP) for i in range(6) for check in last]
    beats += [beat(check, T0 + 3600, status) for check, status in last.items()]
    assert await monitor.recorder.record(beats)
    clock.advance(3600 + advance)
    async with client_of(monitor, page_settings()) as client:
        document = (await client.get("/api/status")).json()
    assert document["status"] == expected
    assert [c["status"] for c in document["components"]] == components
    if expected == "unknown":
        # the time since the last heartbeat is not covered by any bucket yet
        assert document["components"][0]["days"][-1]["unknown_seconds"] == 1801.0


async def test_an_empty_store_shows_no_component_and_a_grey_badge(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    async with client_of(monitor_of(uptime_store, clock), page_settings()) as client:
        document = (await client.get("/api/status")).json()
        badge = (await client.get("/api/status/badge.svg")).text
        page = (await client.get("/status")).text
    assert (document["status"], document["components"]) == ("unknown", [])
    assert "uptime: no data" in badge
    assert f'fill="{BADGE_GREY}"' in badge
    assert "No component has reported yet." in page


async def test_the_document_is_cached_for_cache_seconds(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    monitor = monitor_of(uptime_store, clock)
    assert await monitor.recorder.record([beat("database", T0 + i * EVERY, UP) for i in range(7)])
    clock.advance(3600)
    async with client_of(monitor, page_settings(cache_seconds=10)) as client:
        first = (await client.get("/api/status")).json()
        assert await monitor.recorder.record([beat("database", T0 + 3605, DOWN)])
        clock.advance(9.9)
        assert (await client.get("/api/status")).json() == first
        assert "operational" in (await client.get("/status")).text
        clock.advance(0.1)
        fresh = (await client.get("/api/status")).json()
    assert first["status"] == "operational"
    assert fresh["status"] == "major_outage"
    assert fresh["updated_at"] != first["updated_at"]


class GatedStore(UptimeStore):
    """A real store whose first read waits for a gate, counting the reads."""

    def __init__(self, store: UptimeStore) -> None:
        super().__init__(store.engine)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.reads = 0

    async def load_states(self, source: Source) -> dict[str, ComponentState]:
        self.reads += 1
        self.entered.set()
        await self.gate.wait()
        return await super().load_states(source)


async def test_concurrent_requests_share_one_computation(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    store = GatedStore(uptime_store)
    monitor = monitor_of(store, clock)
    store.gate.set()
    assert await monitor.recorder.record([beat("database", T0 + i * EVERY, UP) for i in range(7)])
    store.gate.clear()
    store.entered.clear()
    store.reads = 0
    clock.advance(3600)
    # cache_seconds 0: a request after the computation would compute again
    async with client_of(monitor, page_settings(cache_seconds=0)) as client:

        async def release() -> None:
            await store.entered.wait()
            for _ in range(100):  # every request reaches the shared computation
                await asyncio.sleep(0)
            store.gate.set()

        paths = ["/api/status", "/status", "/api/status/badge.svg"] * 3
        *responses, _ = await asyncio.gather(*(client.get(p) for p in paths), release())
        assert [r.status_code for r in responses] == [200] * len(paths)
        assert store.reads == 1
        await client.get("/api/status")
        assert store.reads == 2


async def test_a_failing_store_is_a_503_logged_once(tmp_path: Path, clock: FakeClock) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")
    monitor = monitor_of(UptimeStore(engine), clock)
    try:
        with capture_logs() as logs:
            async with client_of(monitor, page_settings()) as client:
                api = await client.get("/api/status")
                badge = await client.get("/api/status/badge.svg")
                page = await client.get("/status")
    finally:
        await engine.dispose()
    assert (api.status_code, badge.status_code, page.status_code) == (503, 503, 503)
    body = api.json()
    assert body["error"] == "status_unavailable"
    assert badge.json()["error"] == "status_unavailable"
    assert api.headers["cache-control"] == "no-store"
    for response in (api, badge, page):
        assert "no such table" not in response.text
        assert "OperationalError" not in response.text
        assert "no-tables" not in response.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    failures = [log for log in logs if log["event"] == "status_page_failed"]
    assert failures == [
        {
            "event": "status_page_failed",
            "log_level": "warning",
            "name": "status",
            "error": "OperationalError",
        }
    ]
