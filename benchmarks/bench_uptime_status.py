"""Uptime status-page reads: every window of 10 components over a year of 10 s heartbeats.

Issue 7, item 9: computing all windows for 10 components over 365 days of 10 s
heartbeats (about 3.2 million per component) stays under 50 ms per status-page
request.

**The store** (SQLite ``<data>/uptime.db``, or ``--url`` for PostgreSQL) is filled
as the running service would have filled it, through the project's own code:

* the schema is the store's migrations (``TelemetryStore.open``);
* every heartbeat goes through ``HeartbeatRecorder.record`` (the recorder of an
  :class:`UptimeMonitor` with default ``uptime`` settings: coverage, unknown gaps,
  maintenance, minute/hour/day buckets with response-time sketches, incidents,
  component state), one call per ``--batch-hours`` of simulated time holding the
  rounds of all 10 components (the prober records one round a call; bigger
  batches only save round trips, the rows written are the same);
* 9 checks and ``overall`` (the worst of the 9 at each round, as
  ``heartbeats_of`` makes it), all of a round sharing its time; rounds every 10 s
  with +-0.3 s jitter, so spans cross minute boundaries; response times lognormal
  per check;
* failures, seeded (``--seed``): per check a 2-30 minute down stretch every ~5
  days, a 5-60 minute degraded stretch every ~3 days, and a single failed
  heartbeat every ~2 days; three gaps with no heartbeats at all (the process
  away: 4 minutes, 45 minutes, 3 hours; longer than 3 intervals, so unknown
  time, and an ``unknown`` incident); one 2-hour maintenance window (all
  components, saved through ``UptimeMonitor.save_maintenance`` before the fill)
  with every check down during its middle hour;
* ``UptimeMonitor.apply_retention()`` at default retention (heartbeats 30 d,
  minute buckets 14 d, hour buckets 400 d) once a simulated day during the fill
  (hourly in production) and once after it, so the store has the shape it has
  in production.

**Time**: the heartbeats end at the real time of the start of the fill (rounded
down to the minute), kept in ``<data>/bench-uptime.json``. Recording and
measuring use a :class:`FakeClock` fixed at that end (+3 s for the reads, so the
last heartbeat is fresh): a reused store (``--reuse``) is measured at the same
moment and needs no moving.

**The measurement**, in this process, sequential, after ``--warmups`` rounds,
``--requests`` times: (a) ``UptimeReader.standard(Source.INSIDE)`` (1h, 24h, 7d,
30d, 90d, 365d for every component: the components' state, then one statement
summing every window, ``UptimeStore.window_totals``); (b) the 90 daily bars of
every component (``UptimeStore.buckets_of`` with a day-level segment from 89 days
before today's UTC midnight to now, one query for all components); (a)+(b), one
status-page request's reads; (c) if
``digitalme.monitoring.uptime.status`` exists, the whole public document:
``StatusBuilder(monitor, uptime.status_page).build().to_dict()``, uncached (what
``StatusCache`` recomputes once per ``cache_seconds``; 24h/7d/30d/90d for the shown
checks and ``overall``, 90 day bars per shown check, incidents, maintenance).

Run: ``.venv/bin/python benchmarks/bench_uptime_status.py [--data DIR] [--reuse]
[--url URL] [--requests 50] [--days 365] [--batch-hours 6] [--jobs 2]``. The fill
runs ``--jobs`` processes (the components split among them; their random draws are
made alike, so the store is the same for any ``--jobs``). On a quiet 2-core machine
it records ~25,000 heartbeats/s (a year: ~21 minutes, ~11 GB before retention);
with ``--data DIR --reuse`` a later run skips it and measures at the same moment.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import importlib
import json
import math
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_alert_latency import percentile
from bench_request_overhead import machine
from sqlalchemy import func, select, text

from digitalme.monitoring.storage import TelemetryStore, schema
from digitalme.monitoring.testing import FakeClock
from digitalme.monitoring.uptime.maintenance import MaintenanceWindow
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.service import UptimeMonitor
from digitalme.monitoring.uptime.store import UptimeStore
from digitalme.monitoring.uptime.windows import DAY, HOUR, MINUTE
from digitalme.settings import UptimeSettings

TARGET = 0.050  # seconds: issue 7's budget per status-page request
INTERVAL = 10.0  # health.probe_interval
META = "bench-uptime.json"
DB = "uptime.db"
CHECKS = {  # name: (median ms, sigma) of its response time
    "database": (2.0, 0.5),
    "telemetry_store": (1.5, 0.5),
    "process": (0.3, 0.3),
    "disk": (0.5, 0.3),
    "memory": (0.2, 0.3),
    "event_loop": (0.4, 0.4),
    "llm": (180.0, 0.4),
    "notifications": (60.0, 0.5),
    "redis": (1.0, 0.5),
}
COMPONENTS = (*CHECKS, OVERALL)
DOWN_EVERY, DOWN_MINUTES = 5 * DAY, (2, 30)
DEGRADED_EVERY, DEGRADED_MINUTES = 3 * DAY, (5, 60)
BLIP_EVERY = 2 * DAY
GAPS = ((4 * MINUTE, 0.23), (45 * MINUTE, 0.51), (3 * HOUR, 0.82))  # length, where in the year
MAINTENANCE_AT, MAINTENANCE_HOURS = 0.67, 2  # where in the year, how long
SEVERITY = {BeatStatus.UP: 0, BeatStatus.DEGRADED: 1, BeatStatus.DOWN: 2}
MESSAGES = {
    BeatStatus.DEGRADED: "slow: answered in {:.0f} ms",
    BeatStatus.DOWN: "unreachable: connection refused",
}


# -- the heartbeats -----------------------------------------------------------------


@dataclass
class Timeline:
    """One check's non-overlapping down and degraded stretches, sorted."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    states: list[BeatStatus] = field(default_factory=list)

    def add(self, start: float, end: float, state: BeatStatus) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.states.append(state)

    def at(self, moment: float) -> BeatStatus:
        index = bisect.bisect_right(self.starts, moment) - 1
        if index >= 0 and moment < self.ends[index]:
            return self.states[index]
        return BeatStatus.UP


@dataclass
class Plan:
    """What the year holds, decided up front from the seed."""

    first: float
    end: float
    timelines: dict[str, Timeline]
    gaps: list[tuple[float, float]]
    maintenance: tuple[float, float]
    counts: dict[str, int]


def make_plan(end: float, days: float, seed: int) -> Plan:
    rng = random.Random(seed)
    first = end - days * DAY
    span = end - first
    counts = {"down stretches": 0, "degraded stretches": 0, "single failed beats": 0}
    m_start = math.floor((first + MAINTENANCE_AT * span) / HOUR) * HOUR
    maintenance = (m_start, m_start + MAINTENANCE_HOURS * HOUR)
    timelines = {}
    for name in CHECKS:
        events: list[tuple[float, float, BeatStatus, str]] = []
        for every, minutes, state, kind in (
            (DOWN_EVERY, DOWN_MINUTES, BeatStatus.DOWN, "down stretches"),
            (DEGRADED_EVERY, DEGRADED_MINUTES, BeatStatus.DEGRADED, "degraded stretches"),
            (BLIP_EVERY, None, BeatStatus.DOWN, "single failed beats"),
        ):
            cursor = first + rng.expovariate(1 / every)
            while cursor < end:
                length = INTERVAL if minutes is None else rng.uniform(*minutes) * MINUTE
                events.append((cursor, cursor + length, state, kind))
                cursor += length + rng.expovariate(1 / every)
        # the middle hour of the maintenance window: everything down (a migration)
        quarter = (maintenance[1] - maintenance[0]) / 4
        events.append((maintenance[0] + quarter, maintenance[1] - quarter, BeatStatus.DOWN, ""))
        events.sort()
        timeline = Timeline()
        last_end = -math.inf
        for start, stop, state, kind in events:
            if start < last_end:  # overlapping: the earlier one wins
                continue
            timeline.add(start, stop, state)
            last_end = stop
            if kind:
                counts[kind] += 1
        timelines[name] = timeline
    gaps = [(first + where * span, first + where * span + length) for length, where in GAPS]
    return Plan(first, end, timelines, gaps, maintenance, counts)


class Prober:
    """Makes the rounds of heartbeats the prober would have recorded, batch by batch."""

    def __init__(self, plan: Plan, seed: int, components: set[str]) -> None:
        self.plan = plan
        self.components = components
        self.rng = random.Random(seed + 1)
        self.round = 0
        self.rounds = math.floor((plan.end - plan.first) / INTERVAL)

    def batch(self, until: float) -> list[Heartbeat]:
        """The heartbeats of every round before ``until`` not made yet."""
        plan, rng = self.plan, self.rng
        beats: list[Heartbeat] = []
        lognormal, uniform = rng.lognormvariate, rng.uniform
        while self.round <= self.rounds:
            base = plan.end - (self.rounds - self.round) * INTERVAL
            if base >= until:
                break
            self.round += 1
            # the last round lands exactly on the end; the others jitter
            at = base if base >= plan.end else base + uniform(-0.3, 0.3)
            if any(start <= at < stop for start, stop in plan.gaps):
                continue
            worst, total, failing = BeatStatus.UP, 0.0, []
            for name, (median, sigma) in CHECKS.items():
                status = plan.timelines[name].at(at)
                duration = median * lognormal(0.0, sigma)
                message = ""
                if status is BeatStatus.DEGRADED:
                    duration *= 20
                    message = MESSAGES[status].format(duration)
                elif status is BeatStatus.DOWN:
                    message = MESSAGES[status]
                total += duration
                if status is not BeatStatus.UP:
                    failing.append(name)
                    if SEVERITY[status] > SEVERITY[worst]:
                        worst = status
                if name not in self.components:
                    continue  # another worker records it (its random draws are made alike)
                beats.append(
                    Heartbeat(
                        component=name,
                        source=Source.INSIDE,
                        at=at,
                        status=status,
                        interval=INTERVAL,
                        duration_ms=duration,
                        failing=() if status is BeatStatus.UP else (name,),
                        message=message,
                    )
                )
            if OVERALL not in self.components:
                continue
            beats.append(
                Heartbeat(
                    component=OVERALL,
                    source=Source.INSIDE,
                    at=at,
                    status=worst,
                    interval=INTERVAL,
                    duration_ms=total + 0.5,
                    failing=tuple(failing),
                    message=("not healthy: " + ", ".join(failing)) if failing else "",
                )
            )
        return beats


# -- the store ------------------------------------------------------------------------


def store_url(data: Path, url: str | None) -> str:
    return url or f"sqlite+aiosqlite:///{data / DB}"


def monitor_for(store: TelemetryStore, clock: FakeClock) -> UptimeMonitor:
    return UptimeMonitor(
        UptimeSettings(), UptimeStore(store.engine), clock=clock, probe_interval=INTERVAL
    )


async def prepare(url: str, plan: Plan) -> None:
    """Migrate the store and save the maintenance window, before the workers start."""
    clock = FakeClock(datetime.fromtimestamp(plan.first, UTC))
    store = await TelemetryStore.open(url, clock=clock)
    try:
        async with store.engine.connect() as connection:
            table = schema.uptime_heartbeats
            found = (await connection.execute(select(func.count()).select_from(table))).scalar()
        assert not found, "the store already holds heartbeats: give an empty one"
        start, stop = plan.maintenance
        await monitor_for(store, clock).save_maintenance(
            MaintenanceWindow(
                title="database migration",
                starts_at=datetime.fromtimestamp(start, UTC),
                ends_at=datetime.fromtimestamp(stop, UTC),
                created_by="bench",
                created_at=datetime.fromtimestamp(start - DAY, UTC),
            )
        )
    finally:
        await store.close()


async def record_part(
    url: str, plan: Plan, seed: int, batch_hours: float, components: tuple[str, ...]
) -> tuple[int, int, float]:
    """Record the year's heartbeats of ``components``: (heartbeats, record calls, generating s)."""
    clock = FakeClock(datetime.fromtimestamp(plan.first, UTC))
    store = await TelemetryStore.open(url, clock=clock, migrate=False)
    try:
        monitor = monitor_for(store, clock)
        await monitor.refresh_calendar()
        prober = Prober(plan, seed, set(components))
        recorder = monitor.recorder
        step = batch_hours * HOUR
        cursor = plan.first
        started = time.perf_counter()
        shown = 0.0
        calls = 0
        generating = 0.0
        label = ",".join(components)
        # retention runs along, once a simulated day (hourly in production), so the raw
        # heartbeats table stays at its production size (30 days) instead of a year's
        next_retention = plan.first + DAY
        while cursor <= plan.end:
            cursor = min(cursor + step, plan.end + INTERVAL)
            made = time.perf_counter()
            beats = prober.batch(cursor)
            generating += time.perf_counter() - made
            clock.advance(max(0.0, cursor - clock.time()))
            if beats:
                ok = await recorder.record(beats)
                assert ok, "the recorder refused a batch (see the log)"
                calls += 1
            if cursor >= next_retention:
                await monitor.apply_retention()
                next_retention += DAY
            done = (cursor - plan.first) / (plan.end - plan.first)
            if done - shown >= 0.05 or cursor > plan.end:
                shown = done
                elapsed = time.perf_counter() - started
                print(
                    f"  [{label[:40]}] {min(done, 1.0):6.1%}  {recorder.recorded:>11,} heartbeats"
                    f"  {recorder.recorded / elapsed:7,.0f}/s  {elapsed:5.0f} s "
                    f"(eta {elapsed / max(done, 1e-9) - elapsed:5.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await store.close()
    return recorder.recorded, calls, generating


def record_worker(
    url: str, plan: Plan, seed: int, batch_hours: float, components: tuple[str, ...]
) -> tuple[int, int, float]:
    return asyncio.run(record_part(url, plan, seed, batch_hours, components))


async def retain(url: str, plan: Plan) -> tuple[dict[str, int], int, float]:
    clock = FakeClock(datetime.fromtimestamp(plan.end, UTC))
    store = await TelemetryStore.open(url, clock=clock, migrate=False)
    try:
        before = await table_counts(store)
        print("retention (UptimeMonitor.apply_retention) ...", file=sys.stderr)
        started = time.perf_counter()
        deleted = await monitor_for(store, clock).apply_retention()
        return before, deleted, time.perf_counter() - started
    finally:
        await store.close()


def fill(
    data: Path, url: str, days: float, batch_hours: float, seed: int, jobs: int
) -> dict[str, Any]:
    end = math.floor(time.time() / MINUTE) * MINUTE
    plan = make_plan(end, days, seed)
    asyncio.run(prepare(url, plan))
    parts = [COMPONENTS[index::jobs] for index in range(jobs)]
    started = time.perf_counter()
    if jobs == 1:
        results = [record_worker(url, plan, seed, batch_hours, parts[0])]
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = [
                pool.submit(record_worker, url, plan, seed, batch_hours, part) for part in parts
            ]
            results = [future.result() for future in futures]
    fill_seconds = time.perf_counter() - started
    before, deleted, retention_seconds = asyncio.run(retain(url, plan))
    if url.startswith("sqlite"):
        with sqlite3.connect(data / DB) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    meta = {
        "url_kind": url.split(":", 1)[0],
        "days": days,
        "seed": seed,
        "first": plan.first,
        "end": plan.end,
        "batch_hours": batch_hours,
        "jobs": jobs,
        "record_calls": sum(calls for _, calls, _ in results),
        "heartbeats": sum(beats for beats, _, _ in results),
        "rows_before_retention": before,
        "fill_seconds": round(fill_seconds, 1),
        "generating_seconds": round(sum(g for _, _, g in results), 1),
        "retention_seconds": round(retention_seconds, 1),
        "retention_deleted": deleted,
        "events": plan.counts,
        "gaps_minutes": [round((b - a) / MINUTE, 1) for a, b in plan.gaps],
        "maintenance": [plan.maintenance[0], plan.maintenance[1]],
    }
    (data / META).write_text(json.dumps(meta, indent=2))
    return meta


async def table_counts(store: TelemetryStore) -> dict[str, int]:
    tables = (
        schema.uptime_heartbeats,
        schema.uptime_buckets,
        schema.uptime_incidents,
        schema.uptime_components,
        schema.maintenance_windows,
    )
    async with store.engine.connect() as connection:
        counts = {}
        for table in tables:
            counts[table.name] = (
                await connection.execute(select(func.count()).select_from(table))
            ).scalar_one()
        buckets = schema.uptime_buckets
        rows = await connection.execute(
            select(buckets.c.level, func.count())
            .group_by(buckets.c.level)
            .order_by(buckets.c.level)
        )
        for level, count in rows:
            counts[f"  of which level {level}"] = count
    return counts


def sqlite_size(path: Path) -> str:
    size = sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )
    with sqlite3.connect(path) as connection:
        page = connection.execute("PRAGMA page_size").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    return (
        f"{size / 1e6:,.0f} MB file ({free * page / 1e6:,.0f} MB of it free pages left by "
        f"retention, reused by later writes)"
    )


async def store_size(store: TelemetryStore, data: Path) -> str:
    if store.backend == "sqlite":
        return await asyncio.to_thread(sqlite_size, data / DB)
    async with store.engine.connect() as connection:
        size = (
            await connection.execute(text("SELECT pg_database_size(current_database())"))
        ).scalar_one()
    return f"{size / 1e6:,.0f} MB database"


# -- the measurement ----------------------------------------------------------------


def status_page_builder(monitor: UptimeMonitor) -> Callable[[], Awaitable[Any]] | str:
    """(c): ``StatusBuilder(monitor, settings).build()`` and its public document, uncached
    (what ``StatusCache`` computes once per ``cache_seconds``), if the module exists."""
    try:
        module = importlib.import_module("digitalme.monitoring.uptime.status")
    except ImportError:
        return "digitalme.monitoring.uptime.status does not exist"
    builder_class = getattr(module, "StatusBuilder", None)
    if builder_class is None:
        return f"{module.__name__} has no StatusBuilder"
    builder = builder_class(monitor, monitor.settings.status_page)

    async def document() -> dict[str, Any]:
        view = await builder.build()
        return view.to_dict()

    return document


async def measure(
    data: Path, url: str, meta: dict[str, Any], requests: int, warmups: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    now = meta["end"] + 3.0
    clock = FakeClock(datetime.fromtimestamp(now, UTC))
    store = await TelemetryStore.open(url, clock=clock)
    try:
        monitor = monitor_for(store, clock)
        await monitor.refresh_calendar()
        uptime = monitor.store
        today = math.floor(now / DAY) * DAY
        bars_segment = [(86400, float(today - 89 * DAY), now)]

        async def windows() -> dict[str, Any]:
            return await monitor.reader.standard(Source.INSIDE)

        async def bars(components: list[str]) -> dict[str, list[Any]]:
            return await uptime.buckets_of(Source.INSIDE, components, bars_segment)

        builder = status_page_builder(monitor)
        timings: dict[str, list[float]] = {"a": [], "b": [], "a+b": [], "c": []}
        last: dict[str, Any] = {}
        for trial in range(warmups + requests):
            started = time.perf_counter()
            figures = await windows()
            middle = time.perf_counter()
            daily = await bars(sorted(figures))
            finished = time.perf_counter()
            document = None
            if callable(builder):
                begun = time.perf_counter()
                document = await builder()
                built = time.perf_counter() - begun
            if trial >= warmups:
                timings["a"].append(middle - started)
                timings["b"].append(finished - middle)
                timings["a+b"].append(finished - started)
                if callable(builder):
                    timings["c"].append(built)
            last = {"figures": figures, "bars": daily, "document": document}
        incidents = await uptime.incidents(now - 365 * DAY, now, source=Source.INSIDE, limit=100000)
        last["incidents"] = incidents
        last["builder"] = builder
        last["counts"] = await table_counts(store)
        last["size"] = await store_size(store, data)
    finally:
        await store.close()
    return timings, last


def report(name: str, latencies: list[float], target: float | None) -> None:
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    verdict = ""
    if target is not None:
        met = "met" if p95 <= target else "NOT met"
        verdict = f"  (target p95 < {target * 1000:.0f} ms: {met})"
    print(
        f"  {name:<46} n={len(latencies):<3} p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms"
        f"  max {max(latencies) * 1000:6.1f} ms  mean {statistics.fmean(latencies) * 1000:6.1f} ms"
        f"{verdict}"
    )


def show(meta: dict[str, Any], timings: dict[str, list[float]], last: dict[str, Any]) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: {machine()}; SQLite {sqlite3.sqlite_version}; load average now: {load}")
    end = datetime.fromtimestamp(meta["end"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"store: {meta['url_kind']}, {meta['days']:g} days of heartbeats every {INTERVAL:g} s "
        f"for {len(COMPONENTS)} components ending {end} (FakeClock), seed {meta['seed']}"
    )
    fill_s = meta["fill_seconds"]
    print(
        f"fill: {meta['heartbeats']:,} heartbeats ({meta['heartbeats'] / len(COMPONENTS):,.0f} "
        f"per component) through HeartbeatRecorder.record in {meta['jobs']} processes (the "
        f"components split among them, one SQLite writer at a time), {meta['record_calls']:,} "
        f"calls of {meta['batch_hours']:g} h of rounds, "
        f"{fill_s:,.0f} s = {fill_s / 60:.1f} min, {meta['heartbeats'] / fill_s:,.0f} "
        f"heartbeats/s (generating them took {meta['generating_seconds']:.0f} s of CPU)"
    )
    print(
        f"failures over the checks: {meta['events']}; gaps (all components) "
        f"{meta['gaps_minutes']} min; one {MAINTENANCE_HOURS} h maintenance window"
    )
    print(
        f"retention: apply_retention deleted {meta['retention_deleted']:,} rows in "
        f"{meta['retention_seconds']:.0f} s; rows before it: "
        + ", ".join(
            f"{k.removeprefix('telemetry_')} {v:,}"
            for k, v in meta["rows_before_retention"].items()
            if not k.startswith(" ")
        )
    )
    print(f"store after retention: {last['size']}")
    for name, count in last["counts"].items():
        print(f"  {name:<36} {count:>12,} rows")
    print(f"incidents of the last 365 days (inside): {len(last['incidents']):,}")
    print("uptime % (inside), from the last (a):")
    names = list(next(iter(last["figures"].values())))
    print(f"  {'component':<16}" + "".join(f"{n:>10}" for n in names) + "   daily bars")
    for component, figures in sorted(last["figures"].items()):
        cells = "".join(
            f"{'-' if f.uptime is None else f'{f.uptime * 100:.3f}':>10}" for f in figures.values()
        )
        print(f"  {component:<16}{cells}   {len(last['bars'][component])}")
    print("timed, sequential, one process (perf_counter around the awaits):")
    report("(a) UptimeReader.standard (6 windows x 10)", timings["a"], None)
    report("(b) 90 daily bars x 10 (UptimeStore.buckets_of)", timings["b"], None)
    report("(a)+(b) one status-page request", timings["a+b"], TARGET)
    if timings["c"]:
        report("(c) StatusBuilder.build().to_dict(), uncached", timings["c"], TARGET)
    else:
        print(f"  (c) skipped: {last['builder']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="reuse the store filled in --data")
    parser.add_argument("--url", help="a PostgreSQL URL instead of <data>/uptime.db")
    parser.add_argument("--requests", type=int, default=50, help="timed status-page requests")
    parser.add_argument("--warmups", type=int, default=5)
    parser.add_argument("--days", type=float, default=365.0, help="days of heartbeats")
    parser.add_argument("--batch-hours", type=float, default=6.0, help="hours per record call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--jobs", type=int, default=2, help="recording processes (components split among them)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-uptime-") as scratch:
        data = (args.data or Path(scratch)).resolve()
        data.mkdir(parents=True, exist_ok=True)
        url = store_url(data, args.url)
        meta_file = data / META
        if args.reuse and meta_file.exists() and (args.url or (data / DB).exists()):
            meta = json.loads(meta_file.read_text())
            print(f"reusing the store of {meta_file}", file=sys.stderr)
        else:
            if args.url is None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{data / DB}{suffix}").unlink(missing_ok=True)
            meta = fill(data, url, args.days, args.batch_hours, args.seed, args.jobs)
        timings, last = asyncio.run(measure(data, url, meta, args.requests, args.warmups))
    show(meta, timings, last)


if __name__ == "__main__":
    main()
