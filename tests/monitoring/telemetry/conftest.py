"""A real telemetry stack (buffer, registry, aggregator, pipeline) on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import load_settings


@pytest.fixture
def sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def telemetry_overrides() -> dict[str, Any]:
    return {"enable_adaptive_sampling": False}


@pytest.fixture
async def monitoring(
    clock: FakeClock, sink: InMemorySink, telemetry_overrides: dict[str, Any]
) -> AsyncIterator[Monitoring]:
    # No health prober: its metrics and status events would join the counted telemetry.
    settings = load_settings(telemetry=telemetry_overrides, health={"prober_enabled": False})
    stack = Monitoring(settings, clock=clock, sinks=[sink], version="9.9.9", strict=True)
    await stack.start()
    yield stack
    await stack.stop()


@pytest.fixture
def bus(monitoring: Monitoring) -> EventBus:
    return monitoring.bus
