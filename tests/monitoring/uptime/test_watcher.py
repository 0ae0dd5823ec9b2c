"""The outside watcher against real HTTP servers on loopback, and against the real
program (``digitalme serve``) killed with SIGKILL while it watches."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from digitalme.monitoring.clock import SystemClock
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.testing import FakeClock
from digitalme.monitoring.uptime.maintenance import MaintenanceWindow
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.store import UptimeStore, UptimeWrite
from digitalme.monitoring.uptime.watcher import TargetError, Watcher, ready_url
from digitalme.monitoring.uptime.windows import UptimeReader
from digitalme.settings import UptimeSettings
from polling import eventually
from receivers import HttpReceiver, Reply
from serve_process import ServeProcess
from servers import find_free_port

WAIT = 30.0  # seconds; a bound for waiting, never a timing assertion


def report(status: str, **checks: str) -> dict[str, Any]:
    """A body as ``/health/ready`` writes it (anonymous: no data, no exception)."""
    return {
        "status": status,
        "totalDuration": 1.5,
        "timestamp": "2026-01-01T00:00:00+00:00",
        "results": [
            {"name": name, "status": value, "duration": 0.5, "description": ""}
            for name, value in checks.items()
        ],
    }


@pytest.fixture
def receiver() -> Any:
    with HttpReceiver() as running:
        yield running


def watcher_for(
    target: str, store: UptimeStore, clock: FakeClock | SystemClock, **kw: Any
) -> Watcher:
    kw.setdefault("interval", 10.0)
    kw.setdefault("timeout", 2.0)
    return Watcher(target, store, clock=clock, **kw)


async def probe_with(
    receiver: HttpReceiver, reply: Reply, store: UptimeStore, clock: FakeClock
) -> Heartbeat:
    receiver.script(reply)
    async with watcher_for(f"http://127.0.0.1:{receiver.port}", store, clock) as watcher:
        return await watcher.probe_once()


# -- one probe -----------------------------------------------------------------------


async def test_healthy_is_up_and_recorded(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    beat = await probe_with(
        receiver, Reply.json(200, report("Healthy", database="Healthy")), uptime_store, clock
    )
    assert beat.status is BeatStatus.UP
    assert beat.source is Source.OUTSIDE
    assert beat.component == OVERALL
    assert beat.at == clock.time()
    assert beat.interval == 10.0
    assert beat.failing == ()
    assert beat.message == ""
    assert beat.duration_ms is not None
    assert beat.duration_ms >= 0.0

    [request] = receiver.requests
    assert request.method == "GET"
    assert request.path == "/health/ready"
    stored = await uptime_store.heartbeats(Source.OUTSIDE, OVERALL, 0, clock.time() + 1, 10)
    assert stored == [beat]
    assert await uptime_store.heartbeats(Source.INSIDE, OVERALL, 0, clock.time() + 1, 10) == []


async def test_degraded_names_the_checks_that_are_not_healthy(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    body = report("Degraded", database="Healthy", cache="Degraded")
    beat = await probe_with(receiver, Reply.json(200, body), uptime_store, clock)
    assert beat.status is BeatStatus.DEGRADED
    assert beat.failing == ("cache",)
    assert beat.message == "Degraded: not healthy: cache"


async def test_503_is_down_and_opens_an_incident(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    body = report("Unhealthy", database="Unhealthy", cache="Degraded")
    beat = await probe_with(receiver, Reply.json(503, body), uptime_store, clock)
    assert beat.status is BeatStatus.DOWN
    assert beat.failing == ("database", "cache")
    assert beat.message == "HTTP 503: not healthy: database, cache"

    [incident] = await uptime_store.incidents(0, clock.time() + 1, source=Source.OUTSIDE)
    assert incident.component == OVERALL
    assert incident.open
    assert incident.started_at == beat.at
    assert incident.failing == ["database", "cache"]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(500, b"Internal Server Error"), "HTTP 500"),
        (Reply(302, b"", {"location": "http://127.0.0.1:1/health/ready"}), "HTTP 302"),
        (Reply(429, b'{"error": "rate_limited"}'), "HTTP 429"),
        (Reply(200, b"<html>login</html>"), "HTTP 200: not a health report"),
        (Reply.json(200, {"status": "UP"}), "HTTP 200: not a health report"),
        (Reply.json(200, report("Unhealthy")), "HTTP 200: not a health report"),
        (Reply(200, b"x" * (2 << 20)), "HTTP 200: not a health report"),
    ],
    ids=["500", "redirect-not-followed", "429", "html", "live-body", "200-unhealthy", "huge"],
)
async def test_any_other_answer_is_down(
    receiver: HttpReceiver,
    uptime_store: UptimeStore,
    clock: FakeClock,
    reply: Reply,
    message: str,
) -> None:
    beat = await probe_with(receiver, reply, uptime_store, clock)
    assert beat.status is BeatStatus.DOWN
    assert beat.message == message
    assert beat.failing == ()
    assert len(receiver.requests) == 1  # no redirect followed


async def test_a_hanging_server_times_out(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    receiver.script(Reply(200, b"{}", delay=WAIT))
    target = f"http://127.0.0.1:{receiver.port}"
    async with watcher_for(target, uptime_store, clock, timeout=0.2) as watcher:
        beat = await watcher.probe_once()
    assert beat.status is BeatStatus.DOWN
    assert beat.message == "timed out"
    assert beat.duration_ms is None  # no answer, no response time
    assert len(receiver.requests) == 1


async def test_a_closed_port_is_unreachable_and_the_message_holds_no_address(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    port = find_free_port()
    async with watcher_for(f"http://127.0.0.1:{port}", uptime_store, clock) as watcher:
        beat = await watcher.probe_once()
    assert beat.status is BeatStatus.DOWN
    assert beat.message == "unreachable"
    assert str(port) not in beat.message
    [stored] = await uptime_store.heartbeats(Source.OUTSIDE, OVERALL, 0, clock.time() + 1, 10)
    assert stored.status is BeatStatus.DOWN
    assert stored.message == "unreachable"


async def test_heartbeats_of_a_named_component_and_their_time(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    receiver.responder = lambda request: Reply.json(200, report("Healthy"))
    target = f"http://127.0.0.1:{receiver.port}/"
    async with watcher_for(target, uptime_store, clock, component="edge", interval=5.0) as watcher:
        await watcher.probe_once()
        clock.advance(5.0)
        await watcher.probe_once()
    state = (await uptime_store.load_states(Source.OUTSIDE))["edge"]
    assert state.last_status is BeatStatus.UP
    assert state.last_at - state.first_at == 5.0
    figures = await UptimeReader(uptime_store, watcher.calendar, UptimeSettings(), clock).figures(
        Source.OUTSIDE, 3600
    )
    assert figures["edge"].totals.up == 5.0
    assert figures["edge"].uptime == 1.0


async def test_down_time_inside_a_maintenance_window_is_maintenance(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    receiver.responder = lambda request: Reply(503, b"")
    start = clock.now()
    await uptime_store.save_maintenance(
        MaintenanceWindow(title="upgrade", starts_at=start, ends_at=start + timedelta(minutes=5))
    )
    target = f"http://127.0.0.1:{receiver.port}"
    async with watcher_for(target, uptime_store, clock) as watcher:
        for _ in range(4):
            await watcher.probe_once()
            clock.advance(10.0)
    figures = await UptimeReader(uptime_store, watcher.calendar, UptimeSettings(), clock).figures(
        Source.OUTSIDE, 3600
    )
    assert figures[OVERALL].totals.maintenance == 30.0
    assert figures[OVERALL].totals.down == 0.0


async def test_the_calendar_is_reloaded_every_minute(
    receiver: HttpReceiver, uptime_store: UptimeStore, clock: FakeClock
) -> None:
    receiver.responder = lambda request: Reply.json(200, report("Healthy"))
    target = f"http://127.0.0.1:{receiver.port}"
    window = MaintenanceWindow(
        title="later", starts_at=clock.now(), ends_at=clock.now() + timedelta(hours=1)
    )
    async with watcher_for(target, uptime_store, clock) as watcher:
        await watcher.probe_once()
        await uptime_store.save_maintenance(window)
        clock.advance(30.0)
        await watcher.probe_once()
        assert watcher.calendar.windows == []
        clock.advance(30.0)
        await watcher.probe_once()
        assert [w.id for w in watcher.calendar.windows] == [window.id]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("ftp://example.com", "must be an http:// or https:// URL"),
        ("127.0.0.1:8000", "must be an http:// or https:// URL"),
        ("http://", "has no host"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://example.com/?x=1", "must be a base URL without query or fragment"),
    ],
)
def test_bad_targets_are_refused(target: str, reason: str) -> None:
    with pytest.raises(TargetError) as raised:
        ready_url(target)
    assert raised.value.reason == reason


def test_the_ready_url_of_a_base_url() -> None:
    assert ready_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/health/ready"
    assert ready_url(" https://example.com/app/ ") == "https://example.com/app/health/ready"


# -- the loop ------------------------------------------------------------------------


class BrokenStore(UptimeStore):
    """An uptime store whose every read and write fails (a database that went away)."""

    async def maintenance_windows(self) -> list[MaintenanceWindow]:
        raise ConnectionError("store is gone")

    async def write(self, batch: UptimeWrite) -> None:
        raise ConnectionError("store is gone")


async def test_the_loop_survives_a_failing_store_and_stops_when_told(
    receiver: HttpReceiver, uptime_store: UptimeStore
) -> None:
    receiver.responder = lambda request: Reply.json(200, report("Healthy"))
    store = BrokenStore(uptime_store.engine)
    stop = asyncio.Event()
    target = f"http://127.0.0.1:{receiver.port}"
    async with watcher_for(target, store, SystemClock(), interval=0.05) as watcher:
        task = asyncio.create_task(watcher.run(stop))
        await eventually(lambda: watcher.probes >= 3, timeout=WAIT, what="three probes")
        stop.set()
        await asyncio.wait_for(task, WAIT)
    assert watcher.errors >= 4  # the calendar load and each probe's write
    assert watcher.recorder.errors >= 3
    assert len(receiver.requests) >= 3


async def test_the_schedule_does_not_drift_with_slow_answers(
    receiver: HttpReceiver, uptime_store: UptimeStore
) -> None:
    # Each answer takes 0.1 s of a 0.25 s interval: probes must still start on
    # the grid (start + k * interval), not every 0.35 s.
    receiver.responder = lambda request: Reply(200, b'{"status": "Healthy"}', delay=0.1)
    stop = asyncio.Event()
    target = f"http://127.0.0.1:{receiver.port}"
    async with watcher_for(target, uptime_store, SystemClock(), interval=0.25) as watcher:
        task = asyncio.create_task(watcher.run(stop))
        await eventually(lambda: watcher.probes >= 6, timeout=WAIT, what="six probes")
        stop.set()
        await asyncio.wait_for(task, WAIT)
    beats = sorted(
        await uptime_store.heartbeats(Source.OUTSIDE, OVERALL, 0, time.time() + 1, 100),
        key=lambda b: b.at,
    )
    offsets = [beat.at - beats[0].at for beat in beats[:6]]
    # drift would put the sixth probe 0.5 s late; a busy machine may delay one probe a little
    assert offsets[5] == pytest.approx(5 * 0.25, abs=0.2), offsets


# -- the real program, killed --------------------------------------------------------

SERVE_CONFIG = """
security:
  rate_limit_enabled: false
health:
  process:
    enabled: false
"""


async def test_the_watcher_records_the_downtime_of_a_killed_server(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(SERVE_CONFIG)
    env = {
        "DIGITALME_CONFIG": str(tmp_path / "config.yaml"),
        "DIGITALME_ADMIN_PASSWORD": "a long admin password",
    }
    server = await asyncio.to_thread(ServeProcess(tmp_path, env).start)
    # The watcher writes into the served instance's own telemetry store, as
    # `digitalme watch -c <the service's config>` does.
    telemetry = await TelemetryStore.open(
        f"sqlite+aiosqlite:///{tmp_path / 'var' / 'telemetry.db'}"
    )
    store = UptimeStore(telemetry.engine)
    clock = SystemClock()
    interval = 0.2
    # A write held up by the restarting server's migrations must not turn into unknown time.
    settings = UptimeSettings(unknown_after_intervals=25)
    stop = asyncio.Event()
    try:
        async with Watcher(
            server.base_url, store, clock=clock, interval=interval, timeout=1.0, settings=settings
        ) as watcher:
            task = asyncio.create_task(watcher.run(stop))
            try:
                await eventually(
                    lambda: watcher.recorder.recorded >= 3, timeout=WAIT, what="three heartbeats"
                )
                before_kill = await store.heartbeats(
                    Source.OUTSIDE, OVERALL, 0, clock.time() + 1, 1000
                )
                assert before_kill
                assert all(b.status is BeatStatus.UP for b in before_kill), [
                    (b.status, b.message) for b in before_kill
                ]
                killed_at = clock.time()
                await asyncio.to_thread(server.kill)
                probes_at_kill = watcher.probes
                # keep watching for about 2 s (ten probes) while nothing answers
                await eventually(
                    lambda: watcher.probes >= probes_at_kill + 10,
                    timeout=WAIT,
                    what="ten probes of the killed server",
                )
                down_until = clock.time()
                server = await asyncio.to_thread(
                    ServeProcess(tmp_path, env, port=server.port).start
                )
                recorded = watcher.recorder.recorded
                await eventually(
                    lambda: (
                        watcher.recorder.recorded >= recorded + 3
                        and watcher.recorder.states[OVERALL].incident is None
                    ),
                    timeout=WAIT,
                    what="up again after the restart",
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, WAIT)
        assert watcher.errors == 0

        beats = sorted(
            await store.heartbeats(Source.OUTSIDE, OVERALL, 0, clock.time() + 1, 10000),
            key=lambda b: b.at,
        )
        down = [b for b in beats if b.status is BeatStatus.DOWN]
        assert len(down) >= 8
        assert all(killed_at < b.at < down_until + WAIT for b in down)
        assert {b.message for b in down} <= {"unreachable", "timed out", "connection failed"}
        assert beats[-1].status is BeatStatus.UP

        last_up = max(b.at for b in before_kill)
        [incident] = await store.incidents(0, clock.time() + 1, source=Source.OUTSIDE)
        assert incident.component == OVERALL
        assert incident.cause == "down"
        # time is counted from the last good heartbeat: the incident starts there,
        # and no heartbeat before the kill was down
        assert last_up <= incident.started_at < killed_at < down[0].at
        assert incident.ended_at is not None
        assert incident.ended_at > down[-1].at - 1e-6
        assert incident.duration(clock.time()) >= down[-1].at - down[0].at

        reader = UptimeReader(store, watcher.calendar, settings, clock)
        figures = (await reader.figures(Source.OUTSIDE, 3600))[OVERALL]
        assert figures.totals.down > 1.0
        assert figures.totals.down == pytest.approx(incident.duration(clock.time()), abs=1e-3)
        assert figures.uptime is not None
        assert figures.uptime < 1.0
        assert figures.totals.failed_beats == len(down)
    finally:
        await asyncio.to_thread(server.stop)
        await telemetry.close()
