"""Typed errors of the dashboard's queries; meaning lives in fields, never in message text."""

from __future__ import annotations

from digitalme.monitoring.errors import MonitoringError

__all__ = ["DashboardError", "InvalidParameter"]


class DashboardError(MonitoringError):
    """Root of the dashboard errors."""


class InvalidParameter(DashboardError):
    """A query parameter cannot be used: ``parameter`` names it, ``reason`` says why.

    The metrics API answers it with 422 ``validation_error`` and ``str()`` as the
    message (``start: must be before end``).
    """

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"{parameter}: {reason}")
