"""The host's health checks: its database and the Claude API, registered on the monitoring layer.

=============  ============================================  ==============  ========
check          what it does                                  failure status  tags
=============  ============================================  ==============  ========
database       connects, counts users and users who logged   Unhealthy       ready
               in during the last 24 h, names the provider
claude-api     ``GET /v1/models/{model}`` through the host's  Degraded        external
               Claude client (no tokens generated); slower
               than ``health.claude.slow_threshold`` or not
               configured is Degraded
=============  ============================================  ==============  ========
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from digitalme.host.db import Database
from digitalme.host.llm import ClaudeModel, ConversationModel
from digitalme.host.models import User
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health import EXTERNAL, READY, CheckFailed, HealthResult, HealthStatus
from digitalme.monitoring.health.service import HealthMonitor
from digitalme.settings import Settings

__all__ = ["ACTIVE_WINDOW", "ClaudeApiHealthCheck", "DatabaseHealthCheck", "add_host_checks"]

ACTIVE_WINDOW = timedelta(hours=24)
"""Users who logged in within this window count as active."""


class DatabaseHealthCheck:
    """The host database answers queries on its own tables."""

    name = "database"

    def __init__(self, database: Database, *, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    async def check(self) -> HealthResult:
        engine = self._database.engine
        provider = engine.dialect.name
        since = self._clock.now() - ACTIVE_WINDOW
        try:
            async with engine.connect() as connection:
                total = await connection.scalar(select(func.count()).select_from(User))
                active = await connection.scalar(
                    select(func.count()).select_from(User).where(User.last_login_date > since)
                )
        except Exception as exc:
            raise CheckFailed("Database connection failed", {"provider": provider}) from exc
        return HealthResult.healthy(
            "Database is healthy",
            {
                "provider": provider,
                "total_users": int(total or 0),
                "active_users_last_24_hours": int(active or 0),
            },
        )


class ClaudeApiHealthCheck:
    """The Claude API answers for the configured model, fast enough.

    ``model`` is the host's own :class:`ClaudeModel` (None when no API key is
    configured, which is reported as Degraded "not configured").
    """

    name = "claude-api"

    def __init__(
        self,
        model: ClaudeModel | None,
        *,
        slow_threshold: float,
        timeout: float,
        clock: Clock,
    ) -> None:
        self._model = model
        self._slow = slow_threshold
        self._timeout = timeout
        self._clock = clock

    async def check(self) -> HealthResult:
        model = self._model
        if model is None:
            return HealthResult.degraded("Claude API not configured (claude.api_key is unset)")
        started = self._clock.monotonic()
        try:
            status = await model.model_status(timeout=self._timeout)
        except Exception as exc:
            raise CheckFailed("Claude API call failed", {"model": model.model}) from exc
        seconds = self._clock.monotonic() - started
        data = {
            "model": status.id,
            "lifecycle": status.lifecycle,
            "response_time_ms": round(seconds * 1000.0, 3),
        }
        if status.lifecycle == "retired":
            return HealthResult.degraded(f"Claude model {status.id} is retired", data)
        if seconds > self._slow:
            return HealthResult.degraded(
                f"Claude API is slow: {seconds:.1f} s (threshold {self._slow:g} s)", data
            )
        return HealthResult.healthy("Claude API is healthy", data)


def add_host_checks(
    health: HealthMonitor,
    settings: Settings,
    *,
    database: Database,
    model: ConversationModel | None,
    clock: Clock,
) -> None:
    """Register the host's checks. ``model`` is the conversation model in use: the
    Claude check probes it when it is a :class:`ClaudeModel`, reports "not
    configured" when there is none, and is left out for any other kind of model
    (the host then does not depend on Claude)."""
    health.add(
        DatabaseHealthCheck(database, clock=clock),
        failure_status=HealthStatus.UNHEALTHY,
        tags=(READY,),
    )
    claude = settings.health.claude
    if not claude.enabled or not (model is None or isinstance(model, ClaudeModel)):
        return
    health.add(
        ClaudeApiHealthCheck(
            model, slow_threshold=claude.slow_threshold, timeout=claude.timeout, clock=clock
        ),
        failure_status=HealthStatus.DEGRADED,
        timeout=claude.timeout,
        tags=(EXTERNAL,),
        min_interval=claude.min_interval,
    )
