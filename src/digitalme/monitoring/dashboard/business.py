"""Business figures over a time window: ``GET /api/metrics/business``.

The plan's ``GetBusinessMetricsAsync`` shape without its made-up numbers (and
without its Telegram figures: the host has no Telegram integration)::

    {"window": {"start": ISO, "end": ISO}, "source": "store" | "live",
     "active_users": {"current": 2, "peak": 3, "total": 4},
     "personality_profiles": {"created": 3, "updated": 2, "queried": 5},
     "conversations": {"started": 2, "completed": null, "average_length": null}}

Where the numbers come from:

* **Active users** are the distinct authenticated users of every request
  (the request context's user, set once auth has run; anonymous and refused
  requests have none), counted before sampling into one HyperLogLog sketch per
  minute (:mod:`~digitalme.monitoring.telemetry.users`: exact for a few hundred
  users a minute, within about 1.6 % beyond). A minute belongs to the window
  when its start does. ``total`` counts the users of the window's minutes;
  ``current`` those of the minutes starting in its last :data:`ACTIVE_SLICE`
  seconds (``[end - 5 min, end)``, so the last 4 to 5 minutes); ``peak`` is the
  most in one 5-minute slice of the clock (``[12:05, 12:10)``; the window's
  edges cut the first and last), or ``current`` when that is more (so
  ``current`` never exceeds ``peak``). The admin metrics API's own calls count
  too (an admin is a user). From the store, the 5-minute periods the retention
  job has rolled up are one sketch each (every instance's minutes in one): a
  day reads 288 sketches and the minutes of its edges, counts each slice
  without a union and unites the 288 for the total, not a scan of the requests.
  Without a store the minutes come from the live sketches (the last
  ``telemetry.live_window_seconds``).
* **Personality profiles** are the host's :data:`PROFILES_METRIC` metric, one
  value per successful action, dimension ``action`` (:class:`ProfileAction`):
  ``created`` (POST), ``updated`` (PUT or PATCH), ``queried`` (a read of one
  profile or of a page of them).
* **Conversations**: ``started`` is the host's :data:`CONVERSATIONS_METRIC`,
  dimension ``event`` (:class:`ConversationEvent`), one value per conversation
  created. The host has no notion of a completed conversation (there is no
  end, close or status: a conversation takes messages for as long as it
  exists), so ``completed`` and ``average_length`` (messages per completed
  conversation) are null, not invented.

Metrics are aggregated before sampling, so their counts are exact, with the
resolution of their buckets: a 10 s bucket belongs to the window its start falls
in. Without a store (``source: live``) they come from the live aggregates (the
last ``telemetry.live_window_seconds``). An empty window gives 0 for every count
(and for the active users, with a store) and null for averages.
"""

from __future__ import annotations

from collections import defaultdict
from enum import StrEnum
from typing import Any

from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.telemetry.users import PERIOD, ActiveUsers, count_distinct, load

__all__ = [
    "ACTIVE_SLICE",
    "CONVERSATIONS_METRIC",
    "PROFILES_METRIC",
    "BusinessReader",
    "ConversationEvent",
    "ProfileAction",
]

PROFILES_METRIC = "business.profiles"
"""One value per successful profile action, dimension ``action`` (:class:`ProfileAction`)."""
CONVERSATIONS_METRIC = "business.conversations"
"""One value per conversation event, dimension ``event`` (:class:`ConversationEvent`)."""
ACTIVE_SLICE = PERIOD
"""Seconds: the slice of ``current`` and ``peak`` active users (5 minutes)."""


class ProfileAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    QUERIED = "queried"


class ConversationEvent(StrEnum):
    # No COMPLETED: the host has no notion of a conversation's end.
    STARTED = "started"


class BusinessReader:
    """Counts the business figures of a window from the store, else the live aggregates."""

    def __init__(self, reader: SeriesReader, users: ActiveUsers) -> None:
        self.aggregator = reader.aggregator
        self.queries = reader.queries
        self.users = users

    async def read(self, window: TimeWindow) -> dict[str, Any]:
        """The route's JSON body for ``window``."""
        profiles = await self._counts(PROFILES_METRIC, "action", window)
        conversations = await self._counts(CONVERSATIONS_METRIC, "event", window)
        return {
            "window": {"start": window.start_at.isoformat(), "end": window.end_at.isoformat()},
            "source": "store" if self.queries is not None else "live",
            "active_users": await self._active_users(window),
            "personality_profiles": {
                action.value: profiles.get(action, 0) for action in ProfileAction
            },
            "conversations": {
                "started": conversations.get(ConversationEvent.STARTED, 0),
                "completed": None,  # the host has no completed conversations
                "average_length": None,  # messages per completed conversation
            },
        }

    async def _active_users(self, window: TimeWindow) -> dict[str, int]:
        recent_start = max(window.start, window.end - ACTIVE_SLICE)
        sketches: list[tuple[float, Any]]  # minutes, and whole periods from the store
        if self.queries is not None:
            stored = await self.queries.active_user_sketches(window.start, window.end)
            sketches = [(start, load(data)) for start, data in stored]  # decoded once
            recent = await self.queries.active_user_sketches(recent_start, window.end)
            current = count_distinct(data for _, data in recent)
        else:
            sketches = [*self.users.sketches(window.start, window.end)]
            current = count_distinct(s for minute, s in sketches if minute >= recent_start)
        slices: defaultdict[float, list[Any]] = defaultdict(list)
        for start, sketch in sketches:  # a stored period is a slice of its own
            slices[start // ACTIVE_SLICE].append(sketch)
        return {
            "current": current,
            "peak": max([current, *(count_distinct(s) for s in slices.values())]),
            "total": count_distinct(sketch for _, sketch in sketches),
        }

    async def _counts(self, name: str, dimension: str, window: TimeWindow) -> dict[str, int]:
        """How many values ``name`` recorded in ``window``, per value of ``dimension``."""
        if self.queries is not None:
            groups = await self.queries.metric_window(
                name, window.start, window.end, group_by=[dimension], sketches=False
            )
        else:
            groups = self.aggregator.window(name, window.start, window.end, group_by=[dimension])
        return {dims[dimension]: bucket.count for dims, bucket in groups}
