"""Fan-out of the live hub: one ``MetricsSnapshot`` broadcast to 200 connected clients.

The real program (``python -m digitalme serve``, uvicorn, one worker, embedded SQLite
store, default settings except ``dashboard.snapshot_interval``,
``dashboard.max_connections`` raised above the client count, and no rate limit) runs
pinned to CPU 0. This process, pinned to CPU 1, logs in as the admin once and opens
admin WebSocket clients of ``/hubs/metrics`` (``websockets``, one asyncio event loop,
token in the query string, each joined to group ``metrics``). Each client's reader
notes ``time.time()`` as soon as a message is returned to it, and keeps, per snapshot
``sequence``, that receive time; ``Dropped`` notices and closes are counted.

Per snapshot period, one server and these phases, one after the other:

* **0 clients**: the server's CPU time (utime + stime of the serve process and its
  children, psutil; the kernel counts them in 10 ms ticks, hence at least 10 s) over
  ``snapshots`` periods: the cost of taking snapshots (and everything else the idle
  server does: telemetry ticks, health probes, alert engine) with no one to send to;
* **1 client**, then **N clients** (permessage-deflate offered, as browsers and
  ``websockets`` do by default) and, at the fast period only, **N clients without
  compression**: measured from one snapshot received by the first client to the
  ``snapshots``-th after it. For each of these snapshots: the *spread* (last
  client's receipt minus the first one's) and, for every client x snapshot pair, the
  *delay* from the snapshot's ``at`` (the server's wall clock when it took the
  snapshot; same machine, same clock) to the receipt. Every client must get every
  snapshot: missing ones, ``Dropped`` counts and closed clients are reported. The
  server's CPU per wall second over the phase, minus the idle phase's, divided by
  the snapshots per second, is the CPU cost of one broadcast (``ms/bcast``; ``ms/cl``
  per client); the CPU per wall second is also the share of one core. This
  process's own CPU share is shown too: a saturated client would inflate the delays.

The hub sends from one task per client (``hub_routes``): each serialises the message
(``json.dumps``) and uvicorn's WebSocket protocol deflates it for its connection. Both
are timed here on the snapshots of the N-client phase, so that the per-broadcast CPU
can be compared with them.

The serve process and this one share the machine's clock: ``at`` -> receipt includes
the rest of taking the snapshot after its ``at`` (the p95 sketch), the fan-out, the
loopback and this loop's wake-up of the reader.

Run: ``.venv/bin/python benchmarks/bench_hub_broadcast.py [--clients 200 --snapshots 40]``
(``--default-snapshots 10`` at the default 2 s period; about 2.5 minutes in all).
Figures from a 2-core machine with other work on it are indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_alert_latency import percentile, serve
from bench_request_overhead import CLIENT_CPU, machine, stop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ADMIN_PASSWORD = "benchmark admin password"
WAIT = 30.0  # seconds; a bound for one step
CONNECTING = 20  # handshakes at once
IDLE_SECONDS = 10.0  # at least, for the resolution of CPU times
TICK = 1 / os.sysconf("SC_CLK_TCK")  # seconds; the resolution of CPU times


@dataclass
class Client:
    """One hub client and what its reader saw."""

    index: int
    ws: ClientConnection | None = None
    received: dict[int, float] = field(default_factory=dict)
    """Snapshot sequence -> ``time.time()`` of its receipt."""
    stamps: dict[int, str] = field(default_factory=dict)
    """Snapshot sequence -> its ``at``."""
    connections: dict[int, int] = field(default_factory=dict)
    """Snapshot sequence -> the hub's client count it states."""
    dropped: int = 0
    dropped_notices: int = 0
    closed: str | None = None
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The snapshots themselves (kept by the first client only)."""
    keep: bool = False

    async def read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                now = time.time()
                message = json.loads(raw)
                kind = message["type"]
                if kind == "MetricsSnapshot":
                    sequence = int(message["sequence"])
                    self.received[sequence] = now
                    self.stamps[sequence] = message["at"]
                    self.connections[sequence] = int(message["connections"])
                    if self.keep:
                        self.messages.append(message)
                    self.snapshot.set()
                elif kind == "Dropped":
                    self.dropped += int(message["count"])
                    self.dropped_notices += 1
                elif kind == "Joined":
                    self.joined.set()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            self.closed = f"closed {code}"
        finally:
            if self.closed is None:
                self.closed = "closed"
            self.snapshot.set()


@dataclass
class Phase:
    """One phase's figures."""

    name: str
    clients: int
    snapshots: int
    interval: float
    cpu_per_second: float
    """Server CPU seconds per wall second (share of one core)."""
    client_cpu_per_second: float
    elapsed: float
    """Wall seconds the CPU times were taken over."""
    spreads: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    first_delays: list[float] = field(default_factory=list)
    """Delays of the first-connected client."""
    last_delays: list[float] = field(default_factory=list)
    """Delays of the last-connected client."""
    missing: int = 0
    dropped: int = 0
    dropped_notices: int = 0
    closed: int = 0
    """Clients the server closed during the phase."""
    stated_connections: set[int] = field(default_factory=set)
    samples: list[dict[str, Any]] = field(default_factory=list)
    """The snapshots of the phase, as received."""


def server_cpu(process: psutil.Process) -> float:
    """utime + stime of the serve process and its children, in seconds."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def epoch(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


async def open_clients(url: str, count: int, compression: str | None) -> list[Client]:
    """``count`` clients, each connected and joined to ``metrics``."""
    clients = [Client(index) for index in range(count)]
    gate = asyncio.Semaphore(CONNECTING)

    async def one(client: Client) -> None:
        async with gate:
            client.ws = await connect(url, compression=compression, open_timeout=WAIT)
            asyncio.get_running_loop().create_task(client.read())
            await client.ws.send(json.dumps({"type": "join", "group": "metrics"}))
            await asyncio.wait_for(client.joined.wait(), WAIT)

    # Connect in order, so that index order is the hub's connection (and broadcast) order.
    tasks = []
    for client in clients:
        tasks.append(asyncio.create_task(one(client)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return clients


async def close_clients(clients: list[Client]) -> None:
    await asyncio.gather(*(c.ws.close() for c in clients if c.ws is not None))


async def next_snapshot(client: Client, after: int) -> int:
    """Wait until ``client`` got a snapshot with a sequence above ``after``; the highest."""
    deadline = time.monotonic() + WAIT
    while not client.received or max(client.received) <= after:
        if client.closed is not None:
            raise RuntimeError(f"client {client.index} {client.closed}")
        client.snapshot.clear()
        await asyncio.wait_for(client.snapshot.wait(), deadline - time.monotonic())
    return max(client.received)


async def idle_phase(process: psutil.Process, interval: float, snapshots: int) -> Phase:
    started, cpu, mine = time.monotonic(), server_cpu(process), own_cpu()
    await asyncio.sleep(max(IDLE_SECONDS, interval * snapshots))
    elapsed = time.monotonic() - started
    return Phase(
        "0 clients",
        0,
        snapshots,
        interval,
        (server_cpu(process) - cpu) / elapsed,
        (own_cpu() - mine) / elapsed,
        elapsed,
    )


async def clients_phase(
    name: str,
    process: psutil.Process,
    url: str,
    count: int,
    interval: float,
    snapshots: int,
    compression: str | None,
) -> Phase:
    clients = await open_clients(url, count, compression)
    try:
        first = clients[0]
        first.keep = True
        # One whole snapshot period with every client joined before the first counted one.
        start = await next_snapshot(first, 0)
        start = await next_snapshot(first, start)
        started, cpu, mine = time.monotonic(), server_cpu(process), own_cpu()
        end = start + snapshots
        while (await next_snapshot(first, end - 1)) < end:
            pass
        elapsed = time.monotonic() - started
        phase = Phase(
            name,
            count,
            snapshots,
            interval,
            (server_cpu(process) - cpu) / elapsed,
            (own_cpu() - mine) / elapsed,
            elapsed,
        )

        # Give the others until one more period (and a second) to get the last one.
        async def last(client: Client) -> None:
            with contextlib.suppress(TimeoutError, RuntimeError):
                await asyncio.wait_for(next_snapshot(client, end - 1), interval + 1.0)

        await asyncio.gather(*(last(c) for c in clients))
        phase.samples = list(first.messages)
        phase.closed = sum(1 for c in clients if c.closed is not None)
    finally:
        await close_clients(clients)
    wanted = range(start + 1, end + 1)
    for sequence in wanted:
        times = [c.received[sequence] for c in clients if sequence in c.received]
        phase.missing += count - len(times)
        if not times:
            continue
        at = epoch(next(c.stamps[sequence] for c in clients if sequence in c.stamps))
        phase.spreads.append(max(times) - min(times))
        phase.delays += [t - at for t in times]
        if sequence in clients[0].received:
            phase.first_delays.append(clients[0].received[sequence] - at)
        if sequence in clients[-1].received:
            phase.last_delays.append(clients[-1].received[sequence] - at)
        phase.stated_connections |= {
            c.connections[sequence] for c in clients if sequence in c.connections
        }
    phase.dropped = sum(c.dropped for c in clients)
    phase.dropped_notices = sum(c.dropped_notices for c in clients)
    return phase


async def phases(
    base: str, process: psutil.Process, interval: float, args: argparse.Namespace, fast: bool
) -> list[Phase]:
    snapshots = args.snapshots if fast else args.default_snapshots
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        login = await http.post(
            "/api/auth/login", json={"email": "admin@localhost", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        token = login.json()["access_token"]
    url = base.replace("http://", "ws://") + f"/hubs/metrics?access_token={token}"
    results = [await idle_phase(process, interval, snapshots)]
    progress(results[-1])
    results.append(await clients_phase("1 client", process, url, 1, interval, snapshots, "deflate"))
    progress(results[-1])
    name = f"{args.clients} clients"
    results.append(
        await clients_phase(name, process, url, args.clients, interval, snapshots, "deflate")
    )
    progress(results[-1])
    if fast:
        name = f"{args.clients} clients, no deflate"
        results.append(
            await clients_phase(name, process, url, args.clients, interval, snapshots, None)
        )
        progress(results[-1])
    return results


def progress(phase: Phase) -> None:
    print(
        f"  {phase.interval:g} s, {phase.name}: "
        f"server {phase.cpu_per_second * 100:.1f} % of a core",
        file=sys.stderr,
    )


def run(interval: float, args: argparse.Namespace, fast: bool) -> list[Phase]:
    with tempfile.TemporaryDirectory(prefix="bench-hub-broadcast-") as scratch:
        process, base = serve(
            Path(scratch),
            {
                "dashboard": {
                    "snapshot_interval": interval,
                    "max_connections": max(100, args.clients + 10),
                },
                "security": {"rate_limit_enabled": False},
            },
            env={"DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD},
        )
        try:
            time.sleep(2.0)  # start-up work settles
            return asyncio.run(phases(base, psutil.Process(process.pid), interval, args, fast))
        finally:
            stop(process)


def ms(value: float) -> str:
    return f"{value * 1000:7.1f}"


def report(results: list[Phase]) -> None:
    interval = results[0].interval
    idle = results[0].cpu_per_second
    print(f"\nsnapshot_interval {interval:g} s ({1 / interval:g} broadcasts/s):")
    print(
        f"{'':<30}{'delay at -> receipt, ms':^37}{'spread, ms':^26}{'server CPU':^26}{'client':>8}"
    )
    print(
        f"{'phase':<30}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"
        f"{'p50':>9}{'p95':>9}{'max':>9}"
        f"{'% core':>9}{'ms/bcast':>9}{'ms/cl':>8}{'% core':>8}"
    )
    for phase in results:
        line = f"{phase.name:<30}"
        if phase.delays:
            line += "".join(f"{ms(percentile(phase.delays, q)):>9}" for q in (50, 95, 99, 100))
            line += "".join(f"{ms(percentile(phase.spreads, q)):>9}" for q in (50, 95, 100))
        else:
            line += " " * 63
        line += f"{phase.cpu_per_second * 100:9.1f}"
        if phase.clients:
            per_broadcast = (phase.cpu_per_second - idle) * interval
            line += f"{per_broadcast * 1000:9.2f}{per_broadcast / phase.clients * 1000:8.3f}"
        else:
            line += f"{'':>9}{'':>8}"
        line += f"{phase.client_cpu_per_second * 100:8.1f}"
        print(line)
    for phase in results[1:]:
        # CPU times count in ticks: up to one tick off at each end of both phases.
        resolution = (2 * TICK / phase.elapsed + 2 * TICK / results[0].elapsed) * interval
        print(
            f"  {phase.name}: ms/bcast +- {resolution * 1000:.1f} (CPU ticks); "
            f"{phase.snapshots} snapshots x {phase.clients} clients, "
            f"missing {phase.missing}, Dropped {phase.dropped} "
            f"({phase.dropped_notices} notices), closed by the server {phase.closed}, "
            f"'connections' stated {sorted(phase.stated_connections)}; "
            f"delay p50 first-connected {ms(statistics.median(phase.first_delays)).strip()} ms, "
            f"last-connected {ms(statistics.median(phase.last_delays)).strip()} ms"
        )


def per_client_work(samples: list[dict[str, Any]], clients: int) -> None:
    """What the server does per client and message, timed here on the phase's snapshots."""
    if not samples:
        return
    texts = [json.dumps(m) for m in samples]

    def dumps() -> None:
        for message in samples:
            json.dumps(message)

    def deflate() -> int:
        # uvicorn's permessage-deflate (websockets, server side): window 12 bits,
        # memLevel 5, context takeover: one compressor per connection, a sync flush
        # after each message.
        compressor = zlib.compressobj(wbits=-12, memLevel=5)
        size = 0
        for text in texts:
            size += len(compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH))
        return size

    number = max(1, 2000 // len(samples))
    dumped = min(timeit.repeat(dumps, number=number, repeat=5)) / number / len(samples)
    deflated = min(timeit.repeat(deflate, number=number, repeat=5)) / number / len(samples)
    size = statistics.fmean(len(t) for t in texts)
    print(
        f"\nper client and message, timed in this process on the {len(samples)} snapshots "
        f"of the {clients}-client phase (JSON {size:.0f} bytes, "
        f"deflated {deflate() / len(samples):.0f}):"
        f" json.dumps {dumped * 1e6:.1f} us, deflate {deflated * 1e6:.1f} us; "
        f"x {clients} clients = {dumped * clients * 1000:.2f} ms + "
        f"{deflated * clients * 1000:.2f} ms per broadcast"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--snapshots", type=int, default=40, help="snapshots at 250 ms")
    parser.add_argument("--default-snapshots", type=int, default=10, help="snapshots at 2 s")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) >= 2 and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    fast = run(0.25, args, fast=True)
    default = run(2.0, args, fast=False)
    print(f"machine: {machine()}")
    print(
        "server pinned to CPU 0, clients (one asyncio loop) to CPU 1; delay: from the "
        "snapshot's 'at' to a client's receipt, every client x snapshot; spread: last "
        "client's receipt minus the first's, per snapshot; ms/bcast: server CPU per "
        "broadcast above the 0-client phase; ms/cl: that per client"
    )
    report(fast)
    report(default)
    per_client_work(fast[-2].samples, args.clients)


if __name__ == "__main__":
    main()
