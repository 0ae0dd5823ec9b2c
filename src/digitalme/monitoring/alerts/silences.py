"""Silences: label matchers over a time range that mute notifications, not detection.

An alert whose labels match an active silence still moves through its states
and is recorded with its events; the events' deliveries are written with status
``suppressed`` (so the history shows why nothing was sent) and the alert is
shown with ``silenced: true``. Matchers use the rule filters' syntax
(:mod:`.matchers`) against the alert's labels (``alertname`` is the rule id,
plus ``severity``, ``category``, the rule's labels and its group labels).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from digitalme.monitoring.alerts.matchers import Matcher, matches_all, parse_matchers
from digitalme.monitoring.alerts.model import new_id

__all__ = ["Silence", "active_silences", "silenced_by"]


class Silence(BaseModel):
    """A silence; ``matchers`` all have to match an alert's labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_id, max_length=64)
    matchers: dict[str, str] = Field(min_length=1, max_length=20)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)
    created_at: AwareDatetime | None = None

    _parsed: tuple[Matcher, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            parse_matchers(self.matchers)
        except ValueError as exc:
            raise ValueError(f"matchers: {exc}") from None
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        return self

    def model_post_init(self, _context: Any) -> None:
        self._parsed = parse_matchers(self.matchers)

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self._parsed, labels)


def active_silences(silences: Iterable[Silence], at: datetime) -> list[Silence]:
    return [silence for silence in silences if silence.active(at)]


def silenced_by(silences: Iterable[Silence], labels: Mapping[str, str], at: datetime) -> str | None:
    """The id of the first active silence matching ``labels``, or None."""
    for silence in silences:
        if silence.active(at) and silence.matches(labels):
            return silence.id
    return None
