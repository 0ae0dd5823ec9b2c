"""SystemSampler: real psutil readings of this process, recorded as metrics."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest
from structlog.testing import capture_logs

from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.system import SystemSampler
from digitalme.monitoring.testing import FakeClock

DEADLINE = 10.0  # seconds; a bound for waiting, never a timing assertion


@pytest.fixture
def registry() -> SeriesRegistry:
    return SeriesRegistry()


@pytest.fixture
def client(registry: SeriesRegistry) -> TelemetryClient:
    return TelemetryClient(
        clock=FakeClock(), buffer=ItemBuffer(1000), registry=registry, strict=True
    )


def recorded(
    registry: SeriesRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    return {(s.key.name, s.key.dimensions): list(s.pending) for s in registry.all()}


def test_sample_values_are_plausible(client: TelemetryClient) -> None:
    values = SystemSampler(client).sample()
    assert values["process.memory.rss_bytes"] > 0
    assert values["process.threads"] >= 1
    assert values["process.uptime_seconds"] >= 0
    assert "process.cpu.percent" not in values  # the first sample only primes psutil
    for generation in (0, 1, 2):
        assert values[f"process.gc.collections.gen{generation}"] >= 0


def test_open_fds_where_the_platform_has_them(client: TelemetryClient) -> None:
    values = SystemSampler(client).sample()
    if psutil.POSIX:
        assert values["process.open_fds"] > 0
    else:  # Windows has no file-descriptor count: the reading is left out, not faked
        assert "process.open_fds" not in values


def test_second_sample_reports_cpu_percent(client: TelemetryClient) -> None:
    sampler = SystemSampler(client)
    sampler.sample()
    sum(i * i for i in range(50_000))  # some CPU work between the samples
    assert sampler.sample()["process.cpu.percent"] >= 0.0


def test_samples_are_recorded_as_metrics(client: TelemetryClient, registry: SeriesRegistry) -> None:
    sampler = SystemSampler(client)
    first = sampler.sample()
    gc.collect()
    second = sampler.sample()
    series = recorded(registry)
    names = ["process.uptime_seconds", "process.memory.rss_bytes", "process.threads"]
    if psutil.POSIX:
        names.append("process.open_fds")
    for name in names:
        assert series[(name, ())] == [first[name], second[name]]
    assert series[("process.cpu.percent", ())] == [second["process.cpu.percent"]]
    for generation in (0, 1, 2):
        key = ("process.gc.collections", (("generation", str(generation)),))
        gen = f"process.gc.collections.gen{generation}"
        assert series[key] == [first[gen], second[gen]]
    # Cumulative counts: a full collection between the samples moved generation 2.
    assert second["process.gc.collections.gen2"] > first["process.gc.collections.gen2"]


def test_latest_is_the_last_sample_and_a_copy(client: TelemetryClient) -> None:
    sampler = SystemSampler(client)
    assert sampler.latest == {}
    assert sampler.latest_at is None
    values = sampler.sample()
    assert sampler.latest == values
    assert sampler.latest_at is not None
    sampler.latest.clear()
    assert sampler.latest == values


def test_uptime_uses_the_process_start_time(client: TelemetryClient) -> None:
    start = psutil.Process().create_time()
    clock = FakeClock()
    clock.advance(start - clock.time() + 123.0)  # 123 s after this process started
    values = SystemSampler(client, clock=clock).sample()
    assert values["process.uptime_seconds"] == pytest.approx(123.0)


class FlakyProcess(psutil.Process):  # type: ignore[misc,unused-ignore]
    """This process, with a memory reading that fails while ``failing`` is set."""

    failing = True

    def memory_info(self) -> Any:
        if self.failing:
            raise psutil.AccessDenied(self.pid)
        return super().memory_info()


def test_a_failing_reading_is_skipped_and_logged_once(client: TelemetryClient) -> None:
    process = FlakyProcess()
    sampler = SystemSampler(client, process=process)
    with capture_logs() as logs:
        first = sampler.sample()
        second = sampler.sample()
        process.failing = False
        third = sampler.sample()
    assert "process.memory.rss_bytes" not in first
    assert "process.memory.rss_bytes" not in second
    assert second["process.threads"] >= 1  # the other readings went on
    assert third["process.memory.rss_bytes"] > 0
    failed = [entry for entry in logs if entry["event"] == "system_reading_failed"]
    assert len(failed) == 1
    assert failed[0]["reading"] == "rss"
    assert [e["reading"] for e in logs if e["event"] == "system_reading_recovered"] == ["rss"]


def test_interval_must_be_positive(client: TelemetryClient) -> None:
    with pytest.raises(ValueError, match="interval"):
        SystemSampler(client, interval=0)


class CountingSampler(SystemSampler):
    """A real sampler that sets :attr:`reached` once it has taken ``target`` samples."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = 3
        self.reached = asyncio.Event()

    def sample(self) -> dict[str, float]:
        values = super().sample()
        if self.samples_taken >= self.target:
            self.reached.set()
        return values

    async def wait_for(self, count: int) -> None:
        """Wait (bounded by a deadline) until ``count`` samples have been taken."""
        self.target = count
        if self.samples_taken < count:
            self.reached.clear()
        async with asyncio.timeout(DEADLINE):
            await self.reached.wait()


async def test_start_samples_at_once_then_on_the_interval_and_stop_ends_it(
    client: TelemetryClient, registry: SeriesRegistry
) -> None:
    sampler = CountingSampler(client, interval=0.01)
    await sampler.start()
    assert sampler.samples_taken == 1  # the first sample is taken before start returns
    assert sampler.latest["process.memory.rss_bytes"] > 0
    assert sampler.running
    await sampler.wait_for(3)
    await sampler.stop()
    assert not sampler.running
    taken = sampler.samples_taken
    await asyncio.sleep(0.05)
    assert sampler.samples_taken == taken
    assert len(recorded(registry)[("process.threads", ())]) == taken


async def test_start_twice_stop_twice_and_restart(client: TelemetryClient) -> None:
    sampler = CountingSampler(client, interval=0.01)
    await sampler.stop()  # never started: nothing to do
    await sampler.start()
    await sampler.start()  # already running: no second task
    assert sampler.samples_taken == 1
    await sampler.stop()
    await sampler.stop()
    await sampler.start()
    await sampler.wait_for(sampler.samples_taken + 2)
    await sampler.stop()
    assert not sampler.running


class ExplodingSampler(SystemSampler):
    """A sampler whose every sample fails, to show the loop survives it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.third_call = asyncio.Event()

    def sample(self) -> dict[str, float]:
        self.calls += 1
        if self.calls >= 3:
            self.third_call.set()
        raise RuntimeError("sampling broke")


async def test_a_failing_sample_never_kills_the_loop(client: TelemetryClient) -> None:
    sampler = ExplodingSampler(client, interval=0.01)
    with capture_logs() as logs:
        await sampler.start()
        async with asyncio.timeout(DEADLINE):
            await sampler.third_call.wait()
        assert sampler.running
        await sampler.stop()
    assert client.internal_errors >= 3
    assert any(entry["event"] == "system_sample_failed" for entry in logs)
