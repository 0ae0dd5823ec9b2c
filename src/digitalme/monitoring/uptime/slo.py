"""The availability SLO: error budget, burn rate and the multiwindow burn-rate alerts.

With a target of 99.5 % over 30 days the error budget is 0.5 % of 30 days, 216
minutes. *Consumed* is the bad time (down, and unknown when it counts as down)
in the rolling window; maintenance is left out. The *burn rate* over a window is
its error rate divided by the budget's rate ``1 - target``: 1 spends the budget
exactly over the SLO window, 14.4 spends 2 % of it in an hour.

Every ``slo.evaluation_interval`` the tracker computes, for each tier of
``slo.tiers`` (the SRE workbook's: 14.4x over 1 h and 5 min, 6x over 6 h and
30 min, 3x over 1 d and 2 h, 1x over 3 d and 6 h), the smaller of its long- and
short-window burn rates, and records it as the metric ``Uptime.SLO.BurnRate``
(dimension ``tier``). The alert engine's rule ``slo_burn_<tier>`` fires when it
reaches the tier's factor (``alerts.defaults.burn_rate_rules``): both windows
burning is what the workbook asks, the short one making the alert resolve soon
after the burning stops.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import structlog

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.uptime.model import BUDGET_METRIC, BURN_RATE_METRIC, Source
from digitalme.monitoring.uptime.windows import UptimeReader, WindowFigures
from digitalme.settings import SloSettings

__all__ = [
    "BUDGET_METRIC",
    "BURN_RATE_METRIC",
    "SloReport",
    "SloTracker",
    "TierReading",
    "burn_rate",
]

log = structlog.get_logger("digitalme.monitoring.uptime")

CURRENT_BURN_WINDOW = 3600.0
"""The window of the "current" burn rate shown with the budget."""


def burn_rate(figures: WindowFigures | None, target: float) -> float:
    """The error rate over the window divided by ``1 - target`` (0 with nothing observed)."""
    if figures is None or figures.observed <= 0:
        return 0.0
    return (figures.bad / figures.observed) / (1.0 - target)


@dataclass(frozen=True, slots=True)
class TierReading:
    name: str
    factor: float
    severity: str
    long_window: float
    short_window: float
    long_burn_rate: float
    short_burn_rate: float

    @property
    def burn_rate(self) -> float:
        """What the alert compares with the factor: the smaller of the two."""
        return min(self.long_burn_rate, self.short_burn_rate)

    @property
    def burning(self) -> bool:
        return self.burn_rate >= self.factor

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "factor": self.factor,
            "severity": self.severity,
            "long_window_seconds": self.long_window,
            "short_window_seconds": self.short_window,
            "long_burn_rate": round(self.long_burn_rate, 4),
            "short_burn_rate": round(self.short_burn_rate, 4),
            "burning": self.burning,
        }


@dataclass(frozen=True, slots=True)
class SloReport:
    """The SLO over its rolling window, now."""

    target: float  # fraction, 0.995
    window_seconds: float
    component: str
    source: Source
    figures: WindowFigures | None
    current_burn_rate: float
    tiers: tuple[TierReading, ...]

    @property
    def budget_seconds(self) -> float:
        return (1.0 - self.target) * self.window_seconds

    @property
    def consumed_seconds(self) -> float:
        return 0.0 if self.figures is None else self.figures.bad

    @property
    def remaining_seconds(self) -> float:
        return self.budget_seconds - self.consumed_seconds

    @property
    def remaining_ratio(self) -> float:
        return self.remaining_seconds / self.budget_seconds

    def to_dict(self) -> dict[str, Any]:
        uptime = None if self.figures is None else self.figures.uptime
        return {
            "target_percent": round(self.target * 100.0, 6),
            "window_days": self.window_seconds / 86400.0,
            "component": self.component,
            "source": str(self.source),
            "sli_percent": None if uptime is None else round(uptime * 100.0, 4),
            "error_budget": {
                "total_minutes": round(self.budget_seconds / 60.0, 3),
                "consumed_minutes": round(self.consumed_seconds / 60.0, 3),
                "remaining_minutes": round(self.remaining_seconds / 60.0, 3),
                "remaining_percent": round(self.remaining_ratio * 100.0, 3),
            },
            "current_burn_rate": round(self.current_burn_rate, 4),
            "tiers": [tier.to_dict() for tier in self.tiers],
            "window": None if self.figures is None else self.figures.to_dict(),
        }


class SloTracker:
    """Computes the SLO report and records the burn rates for the alert rules."""

    def __init__(
        self,
        reader: UptimeReader,
        settings: SloSettings,
        clock: Clock,
        telemetry: TelemetryClient | None = None,
    ) -> None:
        self.reader = reader
        self.settings = settings
        self.clock = clock
        self.telemetry = telemetry
        self.source = Source(settings.source)
        self.target = settings.target / 100.0
        self._task: asyncio.Task[None] | None = None
        self._outages = Outages("digitalme.monitoring.uptime", failed="slo_evaluation_failed")
        self.evaluations = 0
        self.errors = 0

    async def report(self) -> SloReport:
        settings = self.settings
        component = settings.component
        states = await self.reader.store.load_states(self.source)
        state = {component: states[component]} if component in states else {}
        windows = {settings.window_days * 86400.0, CURRENT_BURN_WINDOW}
        for tier in settings.tiers:
            windows.update((tier.long_window, tier.short_window))
        read = await self.reader.windows(
            self.source,
            {str(seconds): seconds for seconds in sorted(windows)},
            components=[component],
            states=state,
        )
        found: dict[float, WindowFigures | None] = {
            seconds: read[str(seconds)].get(component) for seconds in windows
        }
        tiers = tuple(
            TierReading(
                name=tier.name,
                factor=tier.factor,
                severity=tier.severity,
                long_window=tier.long_window,
                short_window=tier.short_window,
                long_burn_rate=burn_rate(found[tier.long_window], self.target),
                short_burn_rate=burn_rate(found[tier.short_window], self.target),
            )
            for tier in settings.tiers
        )
        return SloReport(
            target=self.target,
            window_seconds=settings.window_days * 86400.0,
            component=component,
            source=self.source,
            figures=found[settings.window_days * 86400.0],
            current_burn_rate=burn_rate(found[CURRENT_BURN_WINDOW], self.target),
            tiers=tiers,
        )

    async def evaluate(self) -> SloReport:
        """Compute the report and record its burn rates and remaining budget."""
        report = await self.report()
        self.evaluations += 1
        telemetry = self.telemetry
        if telemetry is not None:
            for tier in report.tiers:
                value = tier.burn_rate
                if math.isfinite(value):
                    telemetry.track_metric(BURN_RATE_METRIC, value, {"tier": tier.name})
            telemetry.track_metric(BUDGET_METRIC, report.remaining_ratio)
        return report

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name="slo-tracker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _loop(self) -> None:
        while True:
            try:
                await self.evaluate()
                self._outages.recovered("slo")
            except Exception as exc:
                self.errors += 1
                self._outages.failed("slo", type(exc).__name__)
            await asyncio.sleep(self.settings.evaluation_interval)
