"""The metrics API's time parameters: ``start``, ``end`` and ``window``.

``start`` and ``end`` take either

* an ISO 8601 timestamp (``2026-01-01T12:00:00Z``, ``2026-01-01T13:00:00+01:00``,
  ``2026-01-01``); one without a timezone is UTC; or
* a duration meaning "that long before now": ISO 8601 (``PT15M``, ``P1D``) or
  short (``30s``, ``15m``, ``1h``, ``7d``, ``1h30m``), parsed by
  :func:`digitalme.monitoring.durations.parse_duration`.

A bare number is refused there: ``1767225600`` could be epoch seconds as well as
a duration, and guessing wrong would chart the wrong day without a word.
``window`` (the dashboard's "last ...") is a duration, where a bare number is
seconds. Defaults: ``end`` is now, ``start`` one hour before ``end``.

Every refusal is an :class:`InvalidParameter` naming the parameter, which the
routes answer with 422 ``validation_error``. The range is bounded by the
settings' ``dashboard.max_window``, so that no query reads an unbounded history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.errors import InvalidParameter
from digitalme.monitoring.durations import format_duration, parse_duration

__all__ = [
    "DEFAULT_SPAN",
    "TimeWindow",
    "parse_moment",
    "parse_window",
    "time_window",
]

DEFAULT_SPAN = 3600.0
"""Seconds from ``start`` to ``end`` when ``start`` is not given."""

MAX_TEXT = 100
# A ``+02:00`` offset sent unencoded in a query string arrives as `` 02:00``.
_SPACED_OFFSET = re.compile(r"(?<=\d) (\d\d(?::?\d\d)?)$")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``[start, end)`` in epoch seconds (UTC)."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def start_at(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.fromtimestamp(self.end, UTC)


def parse_moment(parameter: str, text: str, now: float) -> float:
    """Epoch seconds of ``text``, a timestamp or a duration before ``now``."""
    value = text.strip()
    if not value or len(value) > MAX_TEXT:
        raise InvalidParameter(parameter, f"not a timestamp or duration: {text[:MAX_TEXT]!r}")
    moment = _timestamp(value)
    if moment is not None:
        return moment
    if not _is_number(value):
        try:
            return now - parse_duration(value)
        except ValueError as exc:
            if str(exc).startswith("must be"):  # a duration, out of range (over 366 days)
                raise InvalidParameter(parameter, f"{value!r} {exc}") from None
    raise InvalidParameter(parameter, f"not a timestamp or duration: {text!r}")


def parse_window(
    text: str | None, *, max_window: float, parameter: str = "window", default: float = DEFAULT_SPAN
) -> float:
    """Seconds in the duration ``text`` (``default`` when None), at most ``max_window``."""
    if text is None:
        return default
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidParameter(parameter, str(exc)) from None
    if seconds <= 0:
        raise InvalidParameter(parameter, "must be longer than zero")
    if seconds > max_window:
        raise InvalidParameter(
            parameter,
            f"{text.strip()} is longer than the maximum ({format_duration(max_window)})",
        )
    return seconds


def time_window(
    start: str | None,
    end: str | None,
    clock: Clock,
    *,
    max_window: float,
    default_span: float = DEFAULT_SPAN,
) -> TimeWindow:
    """The range the ``start`` and ``end`` parameters (None: not given) ask for.

    Relative values count back from the clock's now (both of them: ``start=2h``
    and ``end=1h`` is the hour that ended an hour ago).
    """
    now = clock.time()
    end_at = now if end is None else parse_moment("end", end, now)
    start_at = end_at - default_span if start is None else parse_moment("start", start, now)
    if start_at >= end_at:
        raise InvalidParameter("start", "must be before end")
    if end_at - start_at > max_window:
        raise InvalidParameter(
            "start",
            f"the range from start to end ({format_duration(end_at - start_at)}) is longer "
            f"than the maximum ({format_duration(max_window)})",
        )
    return TimeWindow(start_at, end_at)


def _timestamp(text: str) -> float | None:
    for candidate in (text, _SPACED_OFFSET.sub(r"+\1", text)):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
