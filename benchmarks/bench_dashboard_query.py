"""Dashboard query latency: ``GET /api/metrics/dashboard?window=24h`` over a day of traffic.

Issue 6, item 6: the dashboard over a store holding 24 h of traffic at 100
requests/s (8.64 M requests) answers with p95 <= 100 ms.

**The store** (SQLite, ``<data>/var/telemetry.db``) is filled as the running
service would have filled it, through the project's own code wherever it decides
what is stored:

* the schema is the store's migrations (``TelemetryStore.open``);
* every batch goes through ``TelemetryStore.write`` (the store sink: items as
  multi-row inserts, metric buckets upserted), one batch per 10 minutes of
  simulated time. The store API is fast enough (a few minutes for the day), so
  no hand-written SQL is used for filling;
* metric buckets are the pipeline's 10 s :class:`Bucket` objects (``add_many``,
  real DDSketches) for every series the service records: ``http.server.duration``
  (route x status_code x success, 12 routes), ``dependency.duration``,
  ``Database.Query.*``, ``Personality.Generation.Duration``, ``auth.logins``,
  ``auth.requests``, ``business.profiles``, ``business.conversations``,
  ``Security.Events``, ``System.Health.*`` (every 10 s), ``process.*`` (every
  10 s) and ``telemetry.items`` (every 250 ms tick); series keys come from the
  project's :class:`SeriesRegistry`;
* the 60 s and 3600 s levels are written by the project's roll-up job
  (``retention.compact``, default retention settings), as the running service's
  retention job would have, so ``telemetry_rollups`` is what it would hold;
* request items: the default sampling is adaptive with a target of
  ``telemetry.adaptive_target_items_per_second`` (200) sampleable items a
  second; requests *and* their SQL dependency calls count (the host's token check
  alone is one query per authenticated request). The traffic mix below makes
  about 1.9 SQL calls per request, so ~290 items/s and the sampler's steady
  state is ``ladder(100 * 200 / 290)`` = 50 %: about half the requests are
  stored, weight 2, kept by the sampler's own ``score(trace_id) < percentage``
  rule, with their dependency items (the same operation, the same decision).
  The properties are what the enricher adds for a request (operation, request
  id, user agent, client IP, path, method, authenticated user and role,
  environment, machine, version), built directly (redacting 13 M items would
  only slow the fill down);
* active users: the user of every authenticated request goes into its minute's
  HyperLogLog sketch (:class:`ActiveUsers`, as the telemetry client does before
  sampling), written with each batch;
* security events (~1/s, ~94 k a day: missing or bad credentials, failed logins,
  rate-limit bursts from a few addresses, rare injection attempts), exceptions
  (the 500s of the messages route, the critical security events'
  ``SecurityException``).

Times are spread over ``[now - hours, now)`` at the start of the fill. The fill
takes minutes, and a cached store (``--reuse``) may be days old, so before each
measurement everything is moved forward to the present: items by exactly the
elapsed time, buckets by it rounded down to whole minutes (so that 10 s and 60 s
buckets stay aligned) and the roll-up marks along with them; the 5-minute and
hour levels are deleted and rebuilt from the moved minutes by the project's roll-up
job (``compact``) before the service starts, with the roll-ups of migrations 0006
and 0007 (the busiest minute of each hour, security events per hour, active users
per 5 minutes). The newest minute may
thus lack metric buckets; the 24 h window still reads the whole day. Moving
rewrites every item row (about 3.5 minutes for the 24 h store).

**The measurement**: the real program (``python -m digitalme serve``, uvicorn,
one worker, default settings except no rate limit) on that data directory,
pinned to CPU 0; this process, pinned to CPU 1, logs in as the bootstrap admin
and times (``perf_counter``, whole HTTP round trip) ``--requests`` sequential
``GET /api/metrics/dashboard?window=24h`` with the bearer token after a few
warm-ups, then the same with ``window=1h`` for comparison. Every answer must
be 200 with no failed section.

Run: ``.venv/bin/python benchmarks/bench_dashboard_query.py [--data DIR] [--reuse]
[--requests 50] [--hours 24] [--rate 100]``. Filling 24 h takes about 8 minutes
(plus 30 s of roll-up) and 9 GB of disk; with ``--data DIR --reuse`` a later run
skips it. While the dashboard is far from its target (tens of seconds a request),
lower ``--requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench_alert_latency import percentile, serve
from bench_request_overhead import CLIENT_CPU, machine, stop

from digitalme.monitoring.storage import TelemetryStore, compact
from digitalme.monitoring.storage.schema import ITEM_TABLES
from digitalme.monitoring.telemetry.client import CRITICAL_SECURITY_TYPES, security_severity
from digitalme.monitoring.telemetry.context import TelemetryContext, score
from digitalme.monitoring.telemetry.instrumentation.sql import describe_statement
from digitalme.monitoring.telemetry.items import (
    AnyItem,
    DependencyItem,
    ExceptionItem,
    RequestItem,
    SecurityEventItem,
)
from digitalme.monitoring.telemetry.sampling import ladder
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.telemetry.users import ActiveUsers
from digitalme.settings import RetentionSettings, TelemetrySettings

ADMIN_PASSWORD = "benchmark admin password"
TARGET = 0.100  # seconds: issue 6's p95 for window=24h
BUCKET = 10  # telemetry.bucket_seconds (default)
BATCH_SECONDS = 600  # simulated seconds per store write
TICK = 0.25  # telemetry.aggregation_tick: one telemetry.items value per tick
USERS = 5000
OFFENDERS = 300
INSTANCE = "bench0dashbrd"
DB_TARGET = "sqlite/digitalme.db"
META = "bench-dashboard.json"

# -- the traffic ------------------------------------------------------------------

ROLE = "SELECT users.role FROM users WHERE users.id = ?"
SQL = {
    "profile": "SELECT personality_profiles.id, personality_profiles.name, personality_profiles"
    ".traits FROM personality_profiles WHERE personality_profiles.id = ?",
    "profiles": "SELECT personality_profiles.id, personality_profiles.name FROM "
    "personality_profiles ORDER BY personality_profiles.id LIMIT ? OFFSET ?",
    "insert_profile": "INSERT INTO personality_profiles (name, traits, created_at) "
    "VALUES (?, ?, ?)",
    "update_profile": "UPDATE personality_profiles SET traits=?, updated_at=? WHERE id = ?",
    "conversations": "SELECT conversations.id, conversations.title FROM conversations WHERE "
    "conversations.user_id = ? ORDER BY conversations.id DESC LIMIT ?",
    "conversation": "SELECT conversations.id, conversations.title, conversations.user_id FROM "
    "conversations WHERE conversations.id = ?",
    "messages": "SELECT messages.id, messages.role, messages.content FROM messages WHERE "
    "messages.conversation_id = ? ORDER BY messages.id",
    "insert_conversation": "INSERT INTO conversations (user_id, title, created_at) "
    "VALUES (?, ?, ?)",
    "insert_message": "INSERT INTO messages (conversation_id, role, content, created_at) "
    "VALUES (?, ?, ?, ?)",
    "user": "SELECT users.id, users.email, users.role FROM users WHERE users.id = ?",
    "user_by_email": "SELECT users.id, users.password_hash, users.failed_logins FROM users "
    "WHERE users.email = ?",
    "update_user": "UPDATE users SET failed_logins=?, last_login_at=? WHERE users.id = ?",
}


@dataclass(frozen=True)
class Route:
    name: str  # the route template, as the middleware names requests
    share: float  # of all requests
    statuses: dict[int, float]
    queries: tuple[str, ...]  # keys of SQL, in order
    median_ms: float  # lognormal durations
    sigma: float
    authenticated: bool = True
    path: str = ""  # a concrete path, {} filled with a number

    def concrete(self, rng: random.Random) -> str:
        return self.path.format(rng.randint(1, 20_000)) if "{}" in self.path else self.path


ROUTES = (
    Route("GET /api/personality/{profile_id}", 0.22, {200: 0.96, 404: 0.03, 401: 0.01},
          (ROLE, "profile"), 12, 0.5, path="/api/personality/{}"),
    Route("GET /api/personality", 0.12, {200: 0.99, 401: 0.01}, (ROLE, "profiles"), 18, 0.5,
          path="/api/personality"),
    Route("POST /api/personality", 0.03, {201: 0.94, 422: 0.05, 401: 0.01},
          (ROLE, "insert_profile", "profile"), 25, 0.5, path="/api/personality"),
    Route("PUT /api/personality/{profile_id}", 0.02, {200: 0.95, 404: 0.03, 422: 0.02},
          (ROLE, "profile", "update_profile"), 22, 0.5, path="/api/personality/{}"),
    Route("GET /api/conversations", 0.10, {200: 0.99, 401: 0.01}, (ROLE, "conversations"), 15,
          0.5, path="/api/conversations"),
    Route("GET /api/conversations/{conversation_id}", 0.10, {200: 0.97, 404: 0.03},
          (ROLE, "conversation", "messages"), 20, 0.6, path="/api/conversations/{}"),
    Route("POST /api/conversations", 0.02, {201: 0.98, 422: 0.02},
          (ROLE, "insert_conversation"), 20, 0.5, path="/api/conversations"),
    Route("POST /api/conversations/{conversation_id}/messages", 0.07,
          {201: 0.97, 502: 0.02, 500: 0.01},
          (ROLE, "conversation", "insert_message", "insert_message"), 1500, 0.6,
          path="/api/conversations/{}/messages"),
    Route("GET /api/auth/me", 0.10, {200: 0.99, 401: 0.01}, (ROLE, "user"), 6, 0.4,
          path="/api/auth/me"),
    Route("POST /api/auth/login", 0.02, {200: 0.85, 401: 0.14, 423: 0.01},
          ("user_by_email", "update_user"), 180, 0.2, authenticated=False, path="/api/auth/login"),
    Route("GET /health/live", 0.17, {200: 1.0}, (), 1.0, 0.3, authenticated=False,
          path="/health/live"),
    Route("GET <unmatched>", 0.03, {404: 1.0}, (), 1.5, 0.3, authenticated=False,
          path="/wp-login.php"),
)  # fmt: skip
SECURITY_TYPES = {  # events per second, besides those the routes cause
    "AuthenticationRequired": 0.08,
    "TokenExpired": 0.04,
    "Forbidden": 0.01,
    "SqlInjection": 0.004,
    "XssScript": 0.003,
    "PathTraversal": 0.003,
    "CommandInjection": 0.001,
}
RATE_LIMIT_BURSTS = 1 / 900  # a burst of 429s every ~15 minutes
HEALTH_CHECKS = ("telemetry_store", "process", "database")
PROFILE_ACTIONS = {
    "POST /api/personality": "created",
    "PUT /api/personality/{profile_id}": "updated",
    "GET /api/personality/{profile_id}": "queried",
    "GET /api/personality": "queried",
}
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "python-httpx/0.27.0",
    "kube-probe/1.29",
)
STACK = "".join(
    f'  File "/app/src/digitalme/host/{module}.py", line {line}, in {function}\n    {code}\n'
    for module, line, function, code in (
        ("conversations", 201, "post_message", "reply = await services.llm.reply(history)"),
        ("llm", 322, "reply", "response = await self._client.messages.create(**request)"),
        ("llm", 188, "_call", "raise LlmError(f'upstream answered {status}')"),
    )
)


def sampling_percentage(settings: TelemetrySettings, rate: float) -> float:
    """The adaptive sampler's steady state for ``rate`` requests/s of this mix."""
    queries = sum(route.share * len(route.queries) for route in ROUTES)
    items_per_second = rate * (1 + queries)
    wanted = settings.sampling_percentage
    if settings.enable_adaptive_sampling:
        wanted = min(wanted, 100.0 * settings.adaptive_target_items_per_second / items_per_second)
    return ladder(wanted)


@dataclass
class Counts:
    requests: int = 0
    stored: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    buckets: int = 0


class Traffic:
    """Generates the day interval by interval: metric values and the stored items."""

    def __init__(self, rate: float, percentage: float, first: float, seed: int = 6) -> None:
        self.rng = random.Random(seed)
        self.first = first  # the first second of the day (the process's uptime counts from it)
        self.rate = rate
        self.percentage = percentage
        self.weight = 100.0 / percentage
        self.registry = SeriesRegistry()
        self.cumulative = list(_cumulative(route.share for route in ROUTES))
        self.statuses = [
            (list(route.statuses), list(_cumulative(route.statuses.values()))) for route in ROUTES
        ]
        self.queries = {key: describe_statement(SQL.get(key, key)) for key in [ROLE, *SQL]}
        self.user_ips = [
            f"10.{u // 65536 % 256}.{u // 256 % 256}.{u % 256}" for u in range(USERS + 1)
        ]
        self.offenders = [f"203.0.{i // 250}.{i % 250 + 1}" for i in range(OFFENDERS)]
        self.base = {"Environment": "Development", "MachineName": "bench-host", "Version": "0.1.0"}
        self.counts = Counts()
        self.users = ActiveUsers(live_window=BATCH_SECONDS)  # the minutes not yet written
        self.gc = [0.0, 0.0, 0.0]
        self._keys: dict[tuple[Any, ...], SeriesKey] = {}

    def key(self, name: str, dims: dict[str, object] | None = None) -> SeriesKey:
        """The series key the registry gives ``name`` and ``dims`` (cached)."""
        raw = (name, *(dims or {}).items())
        found = self._keys.get(raw)
        if found is None:
            resolved = self.registry.resolve(name, dims)
            assert not isinstance(resolved, str)
            found = self._keys[raw] = resolved.key
        return found

    def interval(self, start: float) -> tuple[list[tuple[SeriesKey, Bucket]], list[AnyItem]]:
        """One 10 s bucket of every series, and the items stored for ``[start, start + 10)``."""
        rng = self.rng
        values: dict[SeriesKey, list[float]] = defaultdict(list)
        items: list[AnyItem] = []
        count = int(self.rate * BUCKET)
        times = sorted(start + rng.random() * BUCKET for _ in range(count))
        self.counts.requests += count
        for at in times:
            self._request(at, values, items)
        for event_type, per_second in SECURITY_TYPES.items():
            for _ in range(_poisson(rng, per_second * BUCKET)):
                ip = self.offenders[int(rng.paretovariate(1.2)) % OFFENDERS]
                self._security(start + rng.random() * BUCKET, event_type, ip, None, values, items)
        if rng.random() < RATE_LIMIT_BURSTS * BUCKET:
            ip = self.offenders[rng.randrange(OFFENDERS)]
            for i in range(rng.randint(20, 120)):
                at = start + min(BUCKET - 0.001, i * 0.05)
                self._security(at, "RateLimit", ip, None, values, items)
        self._host(start, values)
        buckets = []
        for series_key, series_values in values.items():
            bucket = Bucket(start, BUCKET)
            bucket.add_many(series_values)
            buckets.append((series_key, bucket))
        self.counts.buckets += len(buckets)
        return buckets, items

    def _request(
        self, at: float, values: dict[SeriesKey, list[float]], items: list[AnyItem]
    ) -> None:
        rng = self.rng
        index = bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])
        route = ROUTES[min(index, len(ROUTES) - 1)]
        codes, weights = self.statuses[index]
        status = codes[min(bisect.bisect(weights, rng.random() * weights[-1]), len(codes) - 1)]
        duration = rng.lognormvariate(math.log(route.median_ms), route.sigma)
        if status == 401:
            duration = min(duration, 3.0)
        success = status < 400
        values[self.key("http.server.duration", {
            "route": route.name, "status_code": status, "success": success,
        })].append(duration)  # fmt: skip
        user = None
        ip = f"172.16.0.{rng.randint(1, 4)}"
        queries = route.queries
        if route.authenticated and status != 401:
            user = min(USERS, 1 + int(rng.expovariate(1 / 700)))
            self.users.add(str(user), at)  # as the client does, before sampling
            ip = self.user_ips[user]
            method = "api_key" if user % 20 == 0 else "token"
            values[self.key("auth.requests", {"method": method, "outcome": "accepted"})].append(1)
        elif status == 401 and route.authenticated:
            queries = ()
            self._security(at, "AuthenticationRequired", ip, None, values, items)
        self._host_metrics(route, status, duration, values)
        if route.name == "POST /api/auth/login" and status != 200:
            kind = "LoginFailed" if status == 401 else "AccountLockout"
            self._security(at, kind, ip, None, values, items)
        trace = f"{rng.getrandbits(128) or 1:032x}"
        keep = score(trace) < self.percentage
        offsets = [duration * (i + 0.5) / (len(queries) + 1) for i in range(len(queries))]
        context = TelemetryContext(trace_id=trace, client_ip=ip, path=route.concrete(rng))
        properties = self._properties(trace, context, route, user) if keep else {}
        for key, offset in zip(queries, offsets, strict=True):
            info = self.queries[key]
            took = rng.lognormvariate(math.log(0.6), 0.7)
            values[self.key("dependency.duration", {
                "type": "SQL", "target": DB_TARGET, "success": True,
            })].append(took)  # fmt: skip
            values[self.key("Database.Query.Duration", info.succeeded)].append(took)
            values[self.key("Database.Query.Count", info.succeeded)].append(1)
            if keep:
                items.append(
                    DependencyItem(
                        time=at + offset / 1000,
                        context=context,
                        properties=properties,
                        weight=self.weight,
                        type="SQL",
                        target=DB_TARGET,
                        name=info.name,
                        data=info.data,
                        duration_ms=took,
                        success=True,
                        result_code="OK",
                    )
                )
        if keep:
            items.append(
                RequestItem(
                    time=at,
                    context=context,
                    properties=properties,
                    weight=self.weight,
                    name=route.name,
                    duration_ms=duration,
                    status_code=status,
                    success=success,
                )
            )
        if status == 500:  # unhandled: the middleware records the exception, never sampled
            message = "upstream answered 529"
            items.append(
                ExceptionItem(
                    time=at + duration / 1000,
                    context=context,
                    properties={
                        **self._properties(trace, context, route, user),
                        "Handled": "false",
                    },
                    type="LlmError",
                    message=message,
                    stack=f"Traceback (most recent call last):\n{STACK}LlmError: {message}\n",
                )
            )

    def _properties(
        self, trace: str, context: TelemetryContext, route: Route, user: int | None
    ) -> dict[str, object]:
        """What the enricher adds to a request's items, in its order."""
        properties: dict[str, object] = {
            "OperationId": trace,
            "RequestId": trace[:16],
            "UserAgent": USER_AGENTS[(user or 0) % len(USER_AGENTS)],
            "ClientIP": context.client_ip,
            "RequestPath": context.path,
            "RequestMethod": route.name.split(" ", 1)[0],
        }
        if user is not None:
            properties["AuthenticatedUserId"] = str(user)
            properties["UserRole"] = "Admin" if user == 1 else "User"
        properties.update(self.base)
        return properties

    def _host_metrics(
        self, route: Route, status: int, duration: float, values: dict[SeriesKey, list[float]]
    ) -> None:
        name = route.name
        if name == "POST /api/auth/login":
            outcome = {200: "succeeded", 401: "failed"}.get(status, "locked")
            values[self.key("auth.logins", {"outcome": outcome})].append(1)
        elif status < 300 and name in PROFILE_ACTIONS:
            values[self.key("business.profiles", {"action": PROFILE_ACTIONS[name]})].append(1)
        elif status == 201 and name == "POST /api/conversations":
            values[self.key("business.conversations", {"event": "started"})].append(1)
        elif name.endswith("/messages") and status != 401:
            flag = "true" if status == 201 else "false"
            values[self.key("Personality.Generation.Duration", {
                "ModelType": "claude-sonnet", "Success": flag,
            })].append(duration * 0.95)  # fmt: skip

    def _security(
        self,
        at: float,
        event_type: str,
        ip: str,
        user: str | None,
        values: dict[SeriesKey, list[float]],
        items: list[AnyItem],
    ) -> None:
        """What ``TelemetryClient.track_security_event`` records (never sampled)."""
        severity = security_severity(event_type)
        properties = {"Source": "DigitalMe.Security", "ClientIP": ip, **self.base}
        details = f"{event_type} from {ip}"
        items.append(
            SecurityEventItem(
                time=at,
                properties=properties,
                event_type=event_type,
                severity=severity,
                details=details,
                client_ip=ip,
                user_id=user,
            )
        )
        values[self.key("Security.Events", {"EventType": event_type})].append(1)
        if event_type in CRITICAL_SECURITY_TYPES:
            items.append(
                ExceptionItem(
                    time=at,
                    properties=dict(properties),
                    type="SecurityException",
                    message=f"Critical security event: {event_type} - {details}",
                    severity=severity,
                )
            )

    def _host(self, start: float, values: dict[SeriesKey, list[float]]) -> None:
        """The process sampler and health prober (every 10 s), the pipeline's own counter."""
        rng = self.rng
        values[self.key("System.Health.Overall")].append(1.0)
        for check in HEALTH_CHECKS:
            values[self.key("System.Health.Check.Available", {"check": check})].append(1.0)
            duration = rng.lognormvariate(math.log(2.0), 0.5)
            values[self.key("System.Health.Check.Duration", {"check": check})].append(duration)
        values[self.key("process.uptime_seconds")].append(start - self.first + 5)
        values[self.key("process.memory.rss_bytes")].append(rng.gauss(310e6, 5e6))
        values[self.key("process.cpu.percent")].append(max(0.0, rng.gauss(35.0, 8.0)))
        for generation, rate in enumerate((40.0, 3.0, 0.1)):
            self.gc[generation] += rate * BUCKET
            values[self.key("process.gc.collections", {"generation": generation})].append(
                self.gc[generation]
            )
        values[self.key("process.threads")].append(12.0)
        values[self.key("process.open_fds")].append(float(rng.randint(40, 60)))
        per_tick = self.rate * TICK * self.percentage / 100
        values[self.key("telemetry.items")].extend(
            max(1.0, rng.gauss(per_tick, per_tick**0.5)) for _ in range(int(BUCKET / TICK))
        )


def _cumulative(shares: Any) -> list[float]:
    total = 0.0
    out = []
    for share in shares:
        total += share
        out.append(total)
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method (means here are below 1)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


# -- filling and moving the store ---------------------------------------------------


def store_path(data: Path) -> Path:
    return data / "var" / "telemetry.db"


async def fill(data: Path, hours: float, rate: float) -> dict[str, Any]:
    """Fill ``data``'s telemetry store with ``hours`` of traffic ending at the fill's start."""
    path = store_path(data)
    settings = TelemetrySettings()
    percentage = sampling_percentage(settings, rate)
    end = math.floor(time.time() / BUCKET) * BUCKET
    start = end - hours * 3600
    traffic = Traffic(rate, percentage, start)
    print(
        f"filling {path}: {hours:g} h at {rate:g} requests/s, request items sampled at "
        f"{percentage:.1f} % (weight {100 / percentage:g})",
        file=sys.stderr,
    )
    started = time.perf_counter()
    store = await TelemetryStore.open(f"sqlite+aiosqlite:///{path}")
    try:
        cursor = start
        while cursor < end:
            upper = min(end, cursor + BATCH_SECONDS)
            buckets: list[tuple[SeriesKey, Bucket]] = []
            items: list[AnyItem] = []
            for at in range(int(cursor), int(upper), BUCKET):
                more_buckets, more_items = traffic.interval(float(at))
                buckets += more_buckets
                items += more_items
            for item in items:
                traffic.counts.stored[item.kind.value] += 1
            users = traffic.users.take_dirty()
            traffic.users.prune(upper)
            batch = TelemetryBatch(items=items, buckets=buckets, instance=INSTANCE, users=users)
            await store.write(batch)
            cursor = upper
            done = (cursor - start) / (end - start)
            elapsed = time.perf_counter() - started
            print(
                f"  {done:6.1%}  {traffic.counts.requests:>10,} requests  "
                f"{elapsed:6.0f} s (eta {elapsed / done - elapsed:4.0f} s)",
                file=sys.stderr,
            )
        written = time.perf_counter() - started
        print("rolling up (retention.compact) ...", file=sys.stderr)
        report = await compact(store, time.time(), RetentionSettings())
        rolled = time.perf_counter() - started - written
    finally:
        await store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    meta = {
        "hours": hours,
        "rate": rate,
        "sampling_percentage": percentage,
        "requests": traffic.counts.requests,
        "stored_items": dict(traffic.counts.stored),
        "buckets_10s": traffic.counts.buckets,
        "rolled_up": {str(k): v for k, v in report.rolled_up.items()},
        "fill_seconds": round(written, 1),
        "rollup_seconds": round(rolled, 1),
        "end": end,
    }
    (data / META).write_text(json.dumps(meta, indent=2))
    return meta


async def roll_up(data: Path) -> None:
    store = await TelemetryStore.open(f"sqlite+aiosqlite:///{store_path(data)}")
    try:
        await compact(store, time.time(), RetentionSettings())
    finally:
        await store.close()


def move_to_now(data: Path, meta: dict[str, Any]) -> float:
    """Shift every time in the store so that the data ends now; the shift in seconds."""
    shift = time.time() - meta["end"]
    minutes = math.floor(shift / 60) * 60.0
    started = time.perf_counter()
    with sqlite3.connect(store_path(data)) as connection:
        for table in ITEM_TABLES.values():
            # Names come from the store's own schema.
            connection.execute(f"UPDATE {table.name} SET ts = ts + ?", (shift,))  # noqa: S608
        # 5 minutes and hours cannot move by whole minutes: drop those levels, the hours'
        # busiest minutes, the security events' hours and their marks, and have the
        # service's own roll-up job rebuild them from the moved minutes and events below.
        connection.execute("DELETE FROM telemetry_metric_buckets WHERE resolution > ?", (60,))
        connection.execute("DELETE FROM telemetry_rollups WHERE resolution > ?", (60,))
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        rollups = (
            "telemetry_minute_peaks",
            "telemetry_security_hours",
            "telemetry_item_rollups",
            "telemetry_active_user_periods",
        )
        for name in rollups:
            if connection.execute(found, (name,)).fetchone():  # migration 0006 on
                connection.execute(f"DELETE FROM {name}")  # noqa: S608 (our own names)
        # start is in the primary key and each row is checked as it is updated: shifting
        # in place would collide with the next bucket, so go through negative starts.
        connection.execute("UPDATE telemetry_metric_buckets SET start = -(start + ?)", (minutes,))
        connection.execute("UPDATE telemetry_metric_buckets SET start = -start")
        connection.execute("UPDATE telemetry_active_users SET minute = -(minute + ?)", (minutes,))
        connection.execute("UPDATE telemetry_active_users SET minute = -minute")
        connection.execute("UPDATE telemetry_rollups SET done_until = done_until + ?", (minutes,))
    asyncio.run(roll_up(data))
    with sqlite3.connect(store_path(data)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    meta["end"] += shift
    (data / META).write_text(json.dumps(meta, indent=2))
    print(
        f"moved the data {shift:.0f} s forward in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return shift


def store_figures(data: Path) -> tuple[dict[str, int], int]:
    """Row counts of the store's tables and its size in bytes (with the WAL)."""
    path = store_path(data)
    with sqlite3.connect(path) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'telemetry_%' "
                "ORDER BY name"
            )
        ]
        # Names come from sqlite_master.
        counts = {
            name: connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608
            for name in names
        }
    size = sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )
    return counts, size


# -- the measurement ----------------------------------------------------------------


def measure(client: httpx.Client, window: str, requests: int, warmups: int) -> list[float]:
    latencies = []
    for trial in range(warmups + requests):
        started = time.perf_counter()
        response = client.get("/api/metrics/dashboard", params={"window": window})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (response.status_code, response.text[:500])
        body = response.json()
        failed = [name for name, part in body.items() if isinstance(part, dict) and "error" in part]
        assert not failed, f"failed sections: {failed}"
        if trial >= warmups:
            latencies.append(elapsed)
        kind = "warm-up" if trial < warmups else f"{trial - warmups + 1}/{requests}"
        print(f"  window={window} {kind}: {elapsed * 1000:.0f} ms", file=sys.stderr)
    return latencies


def report(name: str, latencies: list[float], target: float | None) -> None:
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    verdict = ""
    if target is not None:
        met = "met" if p95 <= target else "NOT met"
        verdict = f"  (target p95 <= {target * 1000:.0f} ms: {met})"
    print(
        f"{name:<10} n={len(latencies):<3} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
        f"p99 {p99 * 1000:7.1f} ms  max {max(latencies) * 1000:7.1f} ms  "
        f"mean {statistics.fmean(latencies) * 1000:7.1f} ms{verdict}"
    )


def run(data: Path, requests: int, warmups: int) -> dict[str, list[float]]:
    process, base = serve(
        data,
        {"security": {"rate_limit_enabled": False}},
        env={"DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    try:
        time.sleep(3.0)  # start-up work (first retention run, probes) settles
        with httpx.Client(base_url=base, timeout=300) as client:
            login = client.post(
                "/api/auth/login", json={"email": "admin@localhost", "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text[:500]
            client.headers["authorization"] = f"Bearer {login.json()['access_token']}"
            return {window: measure(client, window, requests, warmups) for window in ("24h", "1h")}
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="reuse the store filled in --data")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per window")
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--hours", type=float, default=24.0, help="hours of traffic to store")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) >= 2 and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        data = (args.data or Path(scratch)).resolve()
        data.mkdir(parents=True, exist_ok=True)
        meta_file = data / META
        if args.reuse and meta_file.exists() and store_path(data).exists():
            meta = json.loads(meta_file.read_text())
            print(f"reusing {store_path(data)}", file=sys.stderr)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{store_path(data)}{suffix}").unlink(missing_ok=True)
            meta = asyncio.run(fill(data, args.hours, args.rate))
        move_to_now(data, meta)
        counts, size = store_figures(data)
        latencies = run(data, args.requests, args.warmups)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: {machine()}; load average at the end: {load}")
    print(
        f"store: SQLite, {meta['hours']:g} h at {meta['rate']:g} requests/s = "
        f"{meta['requests']:,} requests; request items sampled at "
        f"{meta['sampling_percentage']:.1f} %; {size / 1e9:.2f} GB; filled in "
        f"{meta['fill_seconds']:.0f} s + roll-up {meta['rollup_seconds']:.0f} s"
    )
    for name, count in counts.items():
        if count:
            print(f"  {name:<32} {count:>12,} rows")
    print("GET /api/metrics/dashboard (whole HTTP round trip, sequential):")
    report("window=24h", latencies["24h"], TARGET)
    report("window=1h", latencies["1h"], None)


if __name__ == "__main__":
    main()
