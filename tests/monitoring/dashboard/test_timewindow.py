"""The metrics API's time parameters: every accepted form, every refusal and its message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digitalme.monitoring.dashboard.errors import InvalidParameter
from digitalme.monitoring.dashboard.timewindow import (
    DEFAULT_SPAN,
    TimeWindow,
    parse_moment,
    parse_window,
    time_window,
)
from digitalme.monitoring.testing import FakeClock

WEEK = 7 * 86400.0
NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # FakeClock's default start


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def refusal(exc: pytest.ExceptionInfo[InvalidParameter]) -> str:
    return str(exc.value)


# -- parse_moment: timestamps ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-12-31T23:00:00Z", epoch(2025, 12, 31, 23)),
        ("2025-12-31T23:00:00+00:00", epoch(2025, 12, 31, 23)),
        ("2026-01-01T00:30:00+01:00", epoch(2025, 12, 31, 23, 30)),  # offset honoured
        ("2025-12-31T18:00:00-05:00", epoch(2025, 12, 31, 23)),
        ("2025-12-31T23:00:00", epoch(2025, 12, 31, 23)),  # naive: UTC
        ("2025-12-31 23:00:00", epoch(2025, 12, 31, 23)),  # space separator
        ("2025-12-31T23:00:00.250Z", epoch(2025, 12, 31, 23) + 0.25),
        ("2025-12-31", epoch(2025, 12, 31)),  # a date: its midnight, UTC
        ("2025-12-31T23:00", epoch(2025, 12, 31, 23)),
        # a "+01:00" sent unencoded in a query string arrives with a space instead
        ("2026-01-01T00:30:00 01:00", epoch(2025, 12, 31, 23, 30)),
        ("  2025-12-31T23:00:00Z  ", epoch(2025, 12, 31, 23)),
    ],
)
def test_timestamps(text: str, expected: float) -> None:
    assert parse_moment("start", text, NOW) == expected


# -- parse_moment: durations before now -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 7 * 86400),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("PT15M", 900),
        ("P1D", 86400),
        ("P1DT2H", 93600),
        ("pt30s", 30),
        ("0s", 0),
    ],
)
def test_durations_count_back_from_now(text: str, seconds_ago: float) -> None:
    assert parse_moment("end", text, NOW) == NOW - seconds_ago


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "end: not a timestamp or duration: 'abc'"),
        ("", "end: not a timestamp or duration: ''"),
        ("   ", "end: not a timestamp or duration: '   '"),
        ("15 m", "end: not a timestamp or duration: '15 m'"),
        ("-15m", "end: not a timestamp or duration: '-15m'"),
        ("2026-13-01T00:00:00Z", "end: not a timestamp or duration: '2026-13-01T00:00:00Z'"),
        ("P", "end: not a timestamp or duration: 'P'"),
        ("PT", "end: not a timestamp or duration: 'PT'"),
        # a bare number could be epoch seconds or seconds ago: refused, not guessed
        ("1767225600", "end: not a timestamp or duration: '1767225600'"),
        ("30", "end: not a timestamp or duration: '30'"),
        ("P400D", "end: 'P400D' must be at most 366 days"),
    ],
)
def test_refused_moments_name_the_parameter(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        parse_moment("end", text, NOW)
    assert refusal(exc) == message
    assert (exc.value.parameter, f"end: {exc.value.reason}") == ("end", message)


def test_an_overlong_value_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidParameter) as exc:
        parse_moment("start", "x" * 5000, NOW)
    assert refusal(exc) == f"start: not a timestamp or duration: {'x' * 100!r}"


# -- parse_window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("7d", WEEK),
        ("PT15M", 900.0),
        ("P1D", 86400.0),
        ("P7D", WEEK),  # exactly the maximum
        ("3600", 3600.0),  # a bare number is seconds here: a window is always a duration
    ],
)
def test_windows(text: str, seconds: float) -> None:
    assert parse_window(text, max_window=WEEK) == seconds


def test_window_defaults_to_an_hour() -> None:
    assert parse_window(None, max_window=WEEK) == DEFAULT_SPAN == 3600.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30d", "window: 30d is longer than the maximum (7d)"),
        ("P8D", "window: P8D is longer than the maximum (7d)"),
        ("7d1s", "window: 7d1s is longer than the maximum (7d)"),
        ("0s", "window: must be longer than zero"),
        (
            "abc",
            "window: not a duration: 'abc' (use e.g. '30s', '5m', '1h30m', 'PT5M' or seconds)",
        ),
        ("", "window: must not be empty"),
        ("-5m", "window: not a duration: '-5m' (use e.g. '30s', '5m', '1h30m', 'PT5M' or seconds)"),
        ("P1Y", "window: not an ISO 8601 duration: 'P1Y'"),
        ("P400D", "window: must be at most 366 days"),
    ],
)
def test_refused_windows(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        parse_window(text, max_window=WEEK)
    assert refusal(exc) == message
    assert exc.value.parameter == "window"


def test_the_maximum_is_a_setting() -> None:
    assert parse_window("2h", max_window=86400) == 7200
    with pytest.raises(InvalidParameter) as exc:
        parse_window("2d", max_window=86400)
    assert refusal(exc) == "window: 2d is longer than the maximum (1d)"


# -- time_window ----------------------------------------------------------------------------


def test_defaults_are_the_last_hour() -> None:
    clock = FakeClock()
    window = time_window(None, None, clock, max_window=WEEK)
    assert window == TimeWindow(NOW - 3600, NOW)
    assert window.seconds == 3600
    assert window.end_at == clock.now()
    assert window.start_at == datetime(2025, 12, 31, 23, tzinfo=UTC)


def test_the_clock_is_read_when_parsing() -> None:
    clock = FakeClock()
    clock.advance(90)
    assert time_window(None, None, clock, max_window=WEEK) == TimeWindow(NOW - 3510, NOW + 90)
    assert time_window("15m", None, clock, max_window=WEEK) == TimeWindow(NOW - 810, NOW + 90)


def test_relative_start_and_end_both_count_back_from_now() -> None:
    clock = FakeClock()
    assert time_window("2h", "1h", clock, max_window=WEEK) == TimeWindow(NOW - 7200, NOW - 3600)
    assert time_window("PT15M", None, clock, max_window=WEEK) == TimeWindow(NOW - 900, NOW)


def test_a_given_end_moves_the_default_start() -> None:
    window = time_window(None, "2025-12-31T12:00:00Z", FakeClock(), max_window=WEEK)
    assert window == TimeWindow(epoch(2025, 12, 31, 11), epoch(2025, 12, 31, 12))


def test_absolute_and_relative_mix() -> None:
    window = time_window("2025-12-31T00:00:00Z", "30m", FakeClock(), max_window=WEEK)
    assert window == TimeWindow(epoch(2025, 12, 31), NOW - 1800)


def test_a_custom_default_span() -> None:
    window = time_window(None, None, FakeClock(), max_window=WEEK, default_span=900)
    assert window == TimeWindow(NOW - 900, NOW)


def test_exactly_the_maximum_is_accepted() -> None:
    assert time_window("7d", None, FakeClock(), max_window=WEEK) == TimeWindow(NOW - WEEK, NOW)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("1h", "2h", "start: must be before end"),
        ("1h", "1h", "start: must be before end"),
        ("2026-01-01T00:00:00Z", "2025-12-31T00:00:00Z", "start: must be before end"),
        (None, "abc", "end: not a timestamp or duration: 'abc'"),
        ("abc", None, "start: not a timestamp or duration: 'abc'"),
        ("abc", "def", "end: not a timestamp or duration: 'def'"),  # end is read first
        (
            "8d",
            None,
            "start: the range from start to end (8d) is longer than the maximum (7d)",
        ),
        (
            "2025-12-01T00:00:00Z",
            "2025-12-31T00:00:00Z",
            "start: the range from start to end (30d) is longer than the maximum (7d)",
        ),
    ],
)
def test_refused_ranges(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        time_window(start, end, FakeClock(), max_window=WEEK)
    assert refusal(exc) == message
