"""Dashboards: the admin metrics API (system vitals, time series of any metric)."""

from digitalme.monitoring.dashboard.api import metrics_routes
from digitalme.monitoring.dashboard.errors import DashboardError, InvalidParameter
from digitalme.monitoring.dashboard.series import Series, SeriesReader
from digitalme.monitoring.dashboard.system import ProcessStats
from digitalme.monitoring.dashboard.timewindow import TimeWindow, time_window

__all__ = [
    "DashboardError",
    "InvalidParameter",
    "ProcessStats",
    "Series",
    "SeriesReader",
    "TimeWindow",
    "metrics_routes",
    "time_window",
]
