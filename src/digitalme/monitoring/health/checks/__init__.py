"""The monitoring layer's own health checks (the host registers its database and Claude checks)."""

from digitalme.monitoring.health.checks.process import ProcessCheck
from digitalme.monitoring.health.checks.redis import RedisCheck
from digitalme.monitoring.health.checks.telemetry_store import TelemetryStoreCheck
from digitalme.monitoring.health.checks.url import UrlCheck

__all__ = ["ProcessCheck", "RedisCheck", "TelemetryStoreCheck", "UrlCheck"]
