"""Maintenance windows: validation, one-off and recurring occurrences, and their silences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from digitalme.monitoring.uptime.maintenance import MaintenanceCalendar, MaintenanceWindow

MONDAY = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def window(**kw: object) -> MaintenanceWindow:
    values: dict[str, object] = {
        "title": "patching",
        "starts_at": MONDAY,
        "ends_at": MONDAY + timedelta(hours=1),
    }
    values.update(kw)
    return MaintenanceWindow.model_validate(values)


def test_a_one_off_window_occurs_once() -> None:
    one = window()
    assert one.occurrences(MONDAY - timedelta(days=1), MONDAY + timedelta(days=30)) == [
        (MONDAY, MONDAY + timedelta(hours=1))
    ]
    assert one.occurrences(MONDAY + timedelta(hours=1), MONDAY + timedelta(days=1)) == []


def test_a_weekly_window_repeats_until_its_end() -> None:
    weekly = window(recurrence="weekly", until=MONDAY + timedelta(days=20))
    found = weekly.occurrences(MONDAY + timedelta(minutes=30), MONDAY + timedelta(days=60))
    assert [start for start, _ in found] == [
        MONDAY,
        MONDAY + timedelta(days=7),
        MONDAY + timedelta(days=14),
    ]
    # far from the first occurrence it does not walk every week since
    daily = window(recurrence="daily")
    late = MONDAY + timedelta(days=3000, minutes=30)
    assert daily.occurrences(late, late + timedelta(minutes=1)) == [
        (MONDAY + timedelta(days=3000), MONDAY + timedelta(days=3000, hours=1))
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ends_at": MONDAY}, "ends_at"),
        ({"recurrence": "daily", "ends_at": MONDAY + timedelta(days=1)}, "ends_at"),
        ({"until": MONDAY + timedelta(days=3)}, "until"),
        ({"recurrence": "monthly"}, "recurrence"),
        ({"components": ["a b"]}, "components"),
        ({"starts_at": "2026-01-05T02:00:00"}, "starts_at"),
    ],
)
def test_bad_windows_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        window(**changes)
    assert field in str(caught.value)


def test_a_running_window_silences_the_alerts_of_its_checks_only() -> None:
    calendar = MaintenanceCalendar(
        [window(components=["database", "overall"]), window(title="all", recurrence="daily")]
    )
    during = MONDAY + timedelta(minutes=10)
    one, every = calendar.silences(during)
    assert one.matches({"check": "database"})
    assert not one.matches({"check": "redis"})
    assert every.matches({"check": "redis"})
    assert not every.matches({"alertname": "http_error_ratio"})  # no check label: not covered
    assert calendar.silences(MONDAY + timedelta(hours=2)) == []
    assert [w.title for w in calendar.active(during, "redis")] == ["all"]
