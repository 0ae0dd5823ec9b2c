"""A real TelemetryClient: a real buffer and series registry, on a fake clock.

What an instrumentation recorded is read straight from the client's buffer
(``buffer.drain()``) and its metric series (``registry.all()``): no fakes.
"""

from __future__ import annotations

import pytest

from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def buffer() -> ItemBuffer:
    return ItemBuffer(10_000)


@pytest.fixture
def registry() -> SeriesRegistry:
    return SeriesRegistry()


@pytest.fixture
def telemetry(clock: FakeClock, buffer: ItemBuffer, registry: SeriesRegistry) -> TelemetryClient:
    # strict: an internal error of the instrumentation fails the test instead of being counted.
    return TelemetryClient(clock=clock, buffer=buffer, registry=registry, strict=True)
