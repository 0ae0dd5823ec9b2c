"""The monitoring layer's own checks, registered from settings.

=================  ===========================  ==============  ============
check              when                         failure status  tags
=================  ===========================  ==============  ============
telemetry-store    a store is configured and    Degraded        ready
                   ``health.telemetry_store_check``
redis              ``connection_strings.redis`` Degraded        ready
                   and ``health.redis_check``
process            ``health.process.enabled``   Degraded        ready
<name>             each of ``health.urls``      as configured   as configured
=================  ===========================  ==============  ============

The host adds its own (``database``, ``claude-api``). Telemetry and Redis
failures degrade the service without stopping it (requests still work), so they
are Degraded, not Unhealthy.
"""

from __future__ import annotations

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.checks import (
    ProcessCheck,
    RedisCheck,
    TelemetryStoreCheck,
    UrlCheck,
)
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.registry import READY
from digitalme.monitoring.health.service import HealthMonitor
from digitalme.monitoring.storage import TelemetryStore
from digitalme.settings import Settings

__all__ = ["add_builtin_checks"]


def add_builtin_checks(
    health: HealthMonitor, settings: Settings, *, store: TelemetryStore | None, clock: Clock
) -> None:
    """Register the checks the settings ask for on ``health``."""
    config = settings.health
    timeout = config.check_timeout
    if store is not None and config.telemetry_store_check:
        health.add(
            TelemetryStoreCheck(store, clock=clock),
            failure_status=HealthStatus.DEGRADED,
            timeout=timeout,
            tags=(READY,),
        )
    redis_url = settings.redis_url
    if redis_url is not None and config.redis_check:
        health.add(
            RedisCheck(redis_url, timeout=timeout),
            failure_status=HealthStatus.DEGRADED,
            timeout=timeout,
            tags=(READY,),
        )
    if config.process.enabled:
        health.add(
            ProcessCheck(config.process, settings.server.data_dir, clock=clock),
            failure_status=HealthStatus.DEGRADED,
            timeout=timeout,
            tags=(READY,),
        )
    for url in config.urls:
        health.add(
            UrlCheck(url.name, url.url, expected_status=url.expected_status, timeout=url.timeout),
            failure_status=HealthStatus(url.failure_status),
            timeout=url.timeout,
            tags=url.tags,
        )
