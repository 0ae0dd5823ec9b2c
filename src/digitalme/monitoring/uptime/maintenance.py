"""Maintenance windows: planned time that counts neither for nor against uptime and the SLO.

A window is one-off (``starts_at`` .. ``ends_at``) or recurring (``daily`` or
``weekly``: the same stretch again every day or week, optionally ``until`` a
moment). ``components`` names the components it covers; empty means all of them
(and ``overall``). While an occurrence runs, the time heartbeats cover counts as
maintenance, and alerts of the covered checks are silenced (:func:`silences`:
label ``check``). Times are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from digitalme.monitoring.alerts.model import new_id
from digitalme.monitoring.alerts.silences import Silence
from digitalme.monitoring.uptime.model import OVERALL

__all__ = ["MaintenanceWindow", "Recurrence", "occurrences", "silences"]

COMPONENT_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
MAX_OCCURRENCES = 10_000
"""Occurrences one query may list (a daily window over 27 years)."""


class Recurrence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"

    @property
    def period(self) -> timedelta:
        return timedelta(days=1) if self is Recurrence.DAILY else timedelta(days=7)


class MaintenanceWindow(BaseModel):
    """One maintenance window, as stored and as the API takes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_id, max_length=36)
    title: str = Field(min_length=1, max_length=200)
    components: list[str] = Field(default_factory=list, max_length=100)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    recurrence: Recurrence | None = None
    until: AwareDatetime | None = None
    created_by: str = Field(default="", max_length=200)
    created_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        for name in self.components:
            if not re.match(COMPONENT_PATTERN, name):
                raise ValueError(f"components: {name[:100]!r} is not a component name")
        if self.recurrence is not None and self.ends_at - self.starts_at >= self.recurrence.period:
            raise ValueError(f"ends_at: a {self.recurrence} window must be shorter than its period")
        if self.until is not None and self.recurrence is None:
            raise ValueError("until: only a recurring window has an end of its recurrence")
        if self.until is not None and self.until <= self.starts_at:
            raise ValueError("until: must be after starts_at")
        return self

    def covers(self, component: str) -> bool:
        return not self.components or component in self.components

    def occurrences(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The occurrences overlapping ``[start, end)``, oldest first (at most MAX_OCCURRENCES)."""
        length = self.ends_at - self.starts_at
        if self.recurrence is None:
            return [(self.starts_at, self.ends_at)] if self._overlaps(start, end) else []
        period = self.recurrence.period
        # the first occurrence that may still run at ``start``
        skipped = max(0, (start - self.starts_at - length) // period)
        first = self.starts_at + period * skipped
        found: list[tuple[datetime, datetime]] = []
        moment = first
        while moment < end and len(found) < MAX_OCCURRENCES:
            if self.until is not None and moment >= self.until:
                break
            if moment + length > start:
                found.append((moment, moment + length))
            moment += period
        return found

    def _overlaps(self, start: datetime, end: datetime) -> bool:
        return self.starts_at < end and self.ends_at > start


def occurrences(
    windows: Iterable[MaintenanceWindow], component: str, start: float, end: float
) -> list[tuple[float, float]]:
    """Epoch-second occurrences of the ``windows`` covering ``component`` in ``[start, end)``."""
    begin, stop = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    return [
        (a.timestamp(), b.timestamp())
        for window in windows
        if window.covers(component)
        for a, b in window.occurrences(begin, stop)
    ]


def silences(windows: Iterable[MaintenanceWindow], at: datetime) -> list[Silence]:
    """A silence for each window running at ``at``, over the ``check`` label of the alerts
    of the checks it covers (every check when it covers all components)."""
    found = []
    for window in windows:
        for start, end in window.occurrences(at, at + timedelta(microseconds=1)):
            names = [re.escape(name) for name in window.components if name != OVERALL]
            if window.components and not names:
                continue
            pattern = "=~" + ("|".join(names) if names else ".+")
            found.append(
                Silence(
                    id=f"maintenance:{window.id}",
                    matchers={"check": pattern},
                    starts_at=start,
                    ends_at=end,
                    created_by=window.created_by or "maintenance",
                    comment=f"maintenance window: {window.title}",
                )
            )
    return found


class MaintenanceCalendar:
    """The maintenance windows in memory, loaded from the store and kept in step with
    the API's changes (and reloaded every ``refresh`` seconds for other writers)."""

    def __init__(self, windows: Iterable[MaintenanceWindow] = ()) -> None:
        self._windows: dict[str, MaintenanceWindow] = {w.id: w for w in windows}

    @property
    def windows(self) -> list[MaintenanceWindow]:
        return sorted(self._windows.values(), key=lambda w: (w.starts_at, w.id))

    def replace(self, windows: Iterable[MaintenanceWindow]) -> None:
        self._windows = {w.id: w for w in windows}

    def put(self, window: MaintenanceWindow) -> None:
        self._windows[window.id] = window

    def remove(self, window_id: str) -> None:
        self._windows.pop(window_id, None)

    def get(self, window_id: str) -> MaintenanceWindow | None:
        return self._windows.get(window_id)

    def occurrences(self, component: str, start: float, end: float) -> list[tuple[float, float]]:
        return occurrences(self._windows.values(), component, start, end)

    def active(self, at: datetime, component: str | None = None) -> list[MaintenanceWindow]:
        """The windows running at ``at`` (covering ``component`` when given)."""
        return [
            window
            for window in self.windows
            if (component is None or window.covers(component))
            and window.occurrences(at, at + timedelta(microseconds=1))
        ]

    def silences(self, at: datetime) -> list[Silence]:
        return silences(self._windows.values(), at)
