"""Health checks: the protocol and registry, built-in checks, cached endpoints and a prober.

See the README's "Health checks" section for what each check reports and how
the endpoints, the cache and the prober behave.
"""

from digitalme.monitoring.health.endpoints import HEALTH_PATH, HEALTH_PATHS, LIVE_PATH, READY_PATH
from digitalme.monitoring.health.model import (
    CheckFailed,
    HealthCheck,
    HealthEntry,
    HealthReport,
    HealthResult,
    HealthStatus,
    worst,
)
from digitalme.monitoring.health.prober import HEALTH_CHANGED_TOPIC, OVERALL, HealthChange
from digitalme.monitoring.health.registry import (
    EXTERNAL,
    READY,
    DuplicateCheck,
    HealthRegistration,
)
from digitalme.monitoring.health.service import HealthMonitor

__all__ = [
    "EXTERNAL",
    "HEALTH_CHANGED_TOPIC",
    "HEALTH_PATH",
    "HEALTH_PATHS",
    "LIVE_PATH",
    "OVERALL",
    "READY",
    "READY_PATH",
    "CheckFailed",
    "DuplicateCheck",
    "HealthChange",
    "HealthCheck",
    "HealthEntry",
    "HealthMonitor",
    "HealthRegistration",
    "HealthReport",
    "HealthResult",
    "HealthStatus",
    "worst",
]
