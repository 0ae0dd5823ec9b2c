"""Health tests: a registry and runner over in-memory checks (monitoring.testing.ScriptedCheck)."""

from __future__ import annotations

import pytest

from digitalme.monitoring.health.registry import HealthRegistry
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.testing import FakeClock

CACHE_SECONDS = 5.0


@pytest.fixture
def registry() -> HealthRegistry:
    return HealthRegistry()


@pytest.fixture
def runner(registry: HealthRegistry, clock: FakeClock) -> HealthRunner:
    return HealthRunner(registry, clock=clock, redactor=Redactor(), cache_seconds=CACHE_SECONDS)
