"""Business figures over a time window: ``GET /api/metrics/business``.

The plan's ``GetBusinessMetricsAsync`` shape without its made-up numbers (and
without its Telegram figures: the host has no Telegram integration)::

    {"window": {"start": ISO, "end": ISO}, "source": "store" | "live",
     "active_users": {"current": 2, "peak": 3, "total": 4},
     "personality_profiles": {"created": 3, "updated": 2, "queried": 5},
     "conversations": {"started": 2, "completed": null, "average_length": null}}

Where the numbers come from:

* **Active users** are the distinct authenticated users of the stored request
  items (their ``AuthenticatedUserId`` property, set once auth has run; anonymous
  and refused requests have none). ``total`` counts them over the window;
  ``current`` over its last :data:`ACTIVE_SLICE` seconds (``[end - 5 min, end)``,
  cut at the window's start); ``peak`` is the most in one 5-minute slice, the
  slices counted back from the end (so ``current`` is the last slice and never
  exceeds ``peak``; the first slice is cut at the start when the window is no
  multiple of 5 minutes). The admin metrics API's own calls carry no user.
  *Sampling*: request items may be sampled out (adaptive sampling keeps about
  ``telemetry.adaptive_target_items_per_second`` items a second), and a user
  whose every request in a slice was sampled out is not counted: under sampling
  these figures are lower bounds. A user's requests are sampled independently,
  so one with several requests is rarely missed. Without a store there are no
  single items and all three are null: user ids are unbounded, so they are
  never a metric dimension.
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

from enum import StrEnum
from typing import Any

from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.telemetry.items import ItemKind

__all__ = [
    "ACTIVE_SLICE",
    "CONVERSATIONS_METRIC",
    "PROFILES_METRIC",
    "USER_PROPERTY",
    "BusinessReader",
    "ConversationEvent",
    "ProfileAction",
]

PROFILES_METRIC = "business.profiles"
"""One value per successful profile action, dimension ``action`` (:class:`ProfileAction`)."""
CONVERSATIONS_METRIC = "business.conversations"
"""One value per conversation event, dimension ``event`` (:class:`ConversationEvent`)."""
ACTIVE_SLICE = 300.0
"""Seconds: the slice of ``current`` and ``peak`` active users."""
USER_PROPERTY = "properties.AuthenticatedUserId"
"""The user of a stored request item (set by enrichment from the request's context)."""


class ProfileAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    QUERIED = "queried"


class ConversationEvent(StrEnum):
    # No COMPLETED: the host has no notion of a conversation's end.
    STARTED = "started"


class BusinessReader:
    """Counts the business figures of a window from the store, else the live aggregates."""

    def __init__(self, reader: SeriesReader) -> None:
        self.aggregator = reader.aggregator
        self.queries = reader.queries

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

    async def _active_users(self, window: TimeWindow) -> dict[str, int | None]:
        if self.queries is None:
            return {"current": None, "peak": None, "total": None}
        slices = await self.queries.count_distinct_by_step(
            ItemKind.REQUEST, USER_PROPERTY, ACTIVE_SLICE, window.start, window.end
        )
        total = await self.queries.count_distinct(
            ItemKind.REQUEST, USER_PROPERTY, window.start, window.end
        )
        counts = [count for _, count in slices]
        return {"current": counts[-1], "peak": max(counts), "total": total}

    async def _counts(self, name: str, dimension: str, window: TimeWindow) -> dict[str, int]:
        """How many values ``name`` recorded in ``window``, per value of ``dimension``."""
        if self.queries is not None:
            groups = await self.queries.metric_window(
                name, window.start, window.end, group_by=[dimension]
            )
        else:
            groups = self.aggregator.window(name, window.start, window.end, group_by=[dimension])
        return {dims[dimension]: bucket.count for dims, bucket in groups}
