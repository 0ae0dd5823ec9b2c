"""Helpers of the alerting tests: rules, values fed by hand, a recording route."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from digitalme.monitoring.alerts import (
    AlertEngine,
    AlertEvent,
    AlertRule,
    validate_rule,
)
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock


def rule(**fields: Any) -> AlertRule:
    """A valid rule: ``metric`` > 10 (avg over 60 s) unless ``fields`` say otherwise."""
    data: dict[str, Any] = {
        "id": "r1",
        "name": "Rule one",
        "metric_name": "m",
        "operator": ">",
        "threshold": 10,
        "evaluation_window": 60,
    }
    data.update(fields)
    return validate_rule(data, max_window=900)


class Feed:
    """Values into an aggregator at the clock's time (or a given one)."""

    def __init__(self, aggregator: Aggregator, clock: FakeClock) -> None:
        self.aggregator = aggregator
        self.clock = clock

    def __call__(
        self,
        name: str,
        *values: float,
        labels: Mapping[str, str] | None = None,
        at: float | None = None,
    ) -> None:
        key = SeriesKey(name, tuple(sorted((labels or {}).items())))
        moment = self.clock.time() if at is None else at
        for value in values:
            self.aggregator.observe(key, value, moment)


@dataclass
class Routes:
    """A route function that records what it was asked and answers ``channels``."""

    channels: list[str] = field(default_factory=lambda: ["slack", "email"])
    calls: list[tuple[AlertEvent, AlertRule | None, tuple[str, ...]]] = field(default_factory=list)

    def __call__(
        self, event: AlertEvent, rule: AlertRule | None, fired: Sequence[str]
    ) -> list[str]:
        self.calls.append((event, rule, tuple(fired)))
        if rule is not None and rule.notification_channels is not None:
            return list(rule.notification_channels)
        return list(self.channels)


def kinds(events: Sequence[AlertEvent]) -> list[str]:
    return [str(event.kind) for event in events]


EngineFactory = Callable[..., AlertEngine]
