"""Active users of the business section: current is the last 5 minutes, peak the busiest
5-minute slice of the clock (or current), total the window's users; the same from the live
sketches, from stored minutes and from rolled-up periods."""

from __future__ import annotations

import pytest

from digitalme.monitoring.dashboard.business import BusinessReader
from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.storage import TelemetryStore, compact
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import TelemetryBatch
from digitalme.monitoring.telemetry.users import ActiveUsers
from digitalme.settings import RetentionSettings

T0 = 1_767_225_600.0  # a multiple of 300
DAY = 86_400.0

# (second after T0, user); users count per minute, so the slices of the clock are
# [0, 300) Ada, Fay, Bob; [300, 600) Bob, Cy; [600, 900) Cy, Dee, Eve, Ada
VISITS = [(10, "ada"), (20, "fay"), (250, "bob"), (290, "ada"), (310, "bob"), (420, "cy"),
          (610, "cy"), (650, "dee"), (700, "eve"), (890, "ada")]  # fmt: skip
CASES = [
    # window, then current, peak, total
    ((0, 900), (4, 4, 6)),  # [600, 900): Cy, Dee, Eve, Ada
    ((60, 540), (3, 3, 3)),  # current [240, 540): Ada, Bob, Cy, more than either slice (2)
    ((0, 420), (2, 3, 3)),  # the slice [0, 300) (3) beats current [120, 420): Bob, Ada
    ((300, 600), (2, 2, 2)),
    ((0, 60), (2, 2, 2)),
]


def _users() -> ActiveUsers:
    users = ActiveUsers(10 * DAY)
    for second, user in VISITS:
        users.add(user, T0 + second)
    return users


def _figures(found: dict[str, int]) -> tuple[int, int, int]:
    return found["current"], found["peak"], found["total"]


async def test_live_sketches() -> None:
    users = _users()
    reader = BusinessReader(SeriesReader(Aggregator(SeriesRegistry()), None), users)
    for (start, end), expected in CASES:
        body = await reader.read(TimeWindow(T0 + start, T0 + end))
        assert _figures(body["active_users"]) == expected, (start, end)


@pytest.mark.parametrize("rolled_up", [False, True])
async def test_stored_minutes_and_periods(store: TelemetryStore, rolled_up: bool) -> None:
    await store.write(TelemetryBatch(users=_users().take_dirty(), instance="one"))
    if rolled_up:
        report = await compact(store, T0 + 900 + 60, RetentionSettings())
        assert report.user_periods == 3  # so every whole slice is one stored sketch
    reader = BusinessReader(
        SeriesReader(Aggregator(SeriesRegistry()), store.query), ActiveUsers(60)
    )
    for (start, end), expected in CASES:
        body = await reader.read(TimeWindow(T0 + start, T0 + end))
        assert _figures(body["active_users"]) == expected, (start, end)
