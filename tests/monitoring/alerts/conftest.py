"""Fixtures for the alerting tests: live aggregates fed by hand, an engine on a fake clock."""

from __future__ import annotations

import pytest

from digitalme.monitoring.alerts import AlertEngine, AlertRule, InMemoryAlertStore
from digitalme.monitoring.alerts.store import AlertStore
from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import AlertingSettings
from monitoring.alerts.helpers import EngineFactory, Feed, Routes


@pytest.fixture
def aggregator() -> Aggregator:
    return Aggregator(SeriesRegistry(), 10, 900)


@pytest.fixture
def feed(aggregator: Aggregator, clock: FakeClock) -> Feed:
    return Feed(aggregator, clock)


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
def memory_store() -> InMemoryAlertStore:
    return InMemoryAlertStore()


@pytest.fixture
def make_engine(
    aggregator: Aggregator, clock: FakeClock, memory_store: InMemoryAlertStore, routes: Routes
) -> EngineFactory:
    def make(
        *rules: AlertRule,
        store: AlertStore | None = None,
        bus: EventBus | None = None,
        settings: AlertingSettings | None = None,
        strict: bool = True,
    ) -> AlertEngine:
        return AlertEngine(
            rules,
            aggregator,
            clock,
            memory_store if store is None else store,
            routes,
            bus,
            settings or AlertingSettings(),
            strict=strict,
        )

    return make
