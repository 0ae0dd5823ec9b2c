"""Sampling: one decision per operation, fixed or adaptive, with weights that keep counts honest.

The decision is the operation's sampling position
(:attr:`~.context.TelemetryContext.sampling_position`), so every item of one
request is kept or dropped together (and, for a trace continued from a caller,
another service hashing the same trace id agrees). A kept item
carries ``weight = 100 / percentage``: summing weights over stored items gives
unbiased counts. Exceptions and security events are never sampled out. Metrics
are aggregated before this step, so their counts are always exact.

Adaptive sampling follows Application Insights: it re-evaluates the observed
rate of sampleable items every ``evaluation_interval`` and moves the percentage
towards ``target_per_second``, decreasing at once and increasing slowly (at most
doubling, and not before ``increase_cooldown`` has passed since the last change).
Unlike Application Insights it does not wait for the interval to end when the
window has already seen its whole budget (``target_per_second`` times the
interval) and is at least :data:`MIN_EARLY_WINDOW` long: a burst, or a busy
service just started at 100%, is cut within a second or two, not after 15 s.
Percentages are always 100/N, so weights are whole numbers.
"""

from __future__ import annotations

import math
import random

from digitalme.monitoring.telemetry.context import TelemetryContext
from digitalme.monitoring.telemetry.items import AnyItem, Priority

MIN_PERCENTAGE = 0.1
MIN_EARLY_WINDOW = 1.0  # seconds: a shorter window's rate is too noisy to act on


def ladder(percentage: float) -> float:
    """The nearest 100/N not above ``percentage`` (100, 50, 33.3, 25, ...)."""
    clamped = min(100.0, max(MIN_PERCENTAGE, percentage))
    return 100.0 / math.ceil(100.0 / clamped - 1e-9)


class Sampler:
    """Decides which items are kept and gives them their weight."""

    def __init__(
        self,
        percentage: float = 100.0,
        *,
        adaptive: bool = False,
        target_per_second: float = 200.0,
        evaluation_interval: float = 15.0,
        increase_cooldown: float = 60.0,
    ) -> None:
        self.percentage = ladder(percentage)
        self._max_percentage = self.percentage
        self.adaptive = adaptive
        self.target = target_per_second
        self.evaluation_interval = evaluation_interval
        self.increase_cooldown = increase_cooldown
        self._window_start: float | None = None
        self._seen = 0
        self._last_change = -math.inf
        self.sampled_out = 0

    def keep(self, item: AnyItem, seen_at: float) -> bool:
        """True to keep ``item`` (its weight is set); also feeds the adaptive rate."""
        if item.priority is Priority.HIGH:
            return True
        weight = self.weight(item.context, seen_at)
        if weight:
            item.weight = weight
            return True
        return False

    def weight(self, context: TelemetryContext | None, seen_at: float) -> float:
        """The weight of a sampleable item of ``context``'s operation, 0.0 when it is dropped.

        Callers that have not built the item yet ask this first, and build it only
        when it is kept. Without a context there is no operation to agree with:
        the item is kept at random.
        """
        self._seen += 1
        if self.adaptive:
            self._evaluate(seen_at)
        percentage = self.percentage
        if percentage >= 100.0:
            return 1.0
        # a sampling position, not a secret: the Mersenne Twister is what we want here
        position = context.sampling_position if context is not None else random.random() * 100  # noqa: S311
        if position < percentage:
            return 100.0 / percentage
        self.sampled_out += 1
        return 0.0

    def _evaluate(self, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
            return
        elapsed = now - self._window_start
        if elapsed < self.evaluation_interval and (
            elapsed < MIN_EARLY_WINDOW or self._seen < self.target * self.evaluation_interval
        ):
            return
        rate = self._seen / elapsed
        self._seen = 0
        self._window_start = now
        wanted = self._max_percentage if rate <= 0 else ladder(100.0 * self.target / rate)
        wanted = min(wanted, self._max_percentage)
        if wanted < self.percentage:
            self.percentage = wanted
            self._last_change = now
        elif wanted > self.percentage and now - self._last_change >= self.increase_cooldown:
            self.percentage = ladder(min(wanted, self.percentage * 2))
            self._last_change = now
