"""Log a failing thing once when it starts failing and once when it recovers.

Readings, figure sources and dashboard sections are retried on every call; a
log line per failed call would flood the logs during an outage. ``Outages``
remembers which names are failing: :meth:`failed` logs the first failure of an
outage (warning), :meth:`recovered` logs its end (info, unless the owner has no
event for it).
"""

from __future__ import annotations

import structlog

__all__ = ["Outages"]


class Outages:
    """Which names are failing; ``key`` is the log field that carries the name."""

    def __init__(
        self, logger: str, *, failed: str, recovered: str | None = None, key: str = "name"
    ) -> None:
        self._logger = logger
        self._failed_event = failed
        self._recovered_event = recovered
        self._key = key
        self._failing: set[str] = set()

    def failed(self, name: str, error: str) -> None:
        if name not in self._failing:
            self._failing.add(name)
            self._log().warning(self._failed_event, **{self._key: name}, error=error)

    def recovered(self, name: str) -> None:
        if name in self._failing:
            self._failing.discard(name)
            if self._recovered_event is not None:
                self._log().info(self._recovered_event, **{self._key: name})

    def _log(self) -> structlog.typing.FilteringBoundLogger:
        # Resolved per call (rare paths) so later logging set-up and capture_logs apply.
        logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(self._logger)
        return logger
