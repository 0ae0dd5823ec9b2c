"""One instance's part in alerting when several share the store.

Every instance with a telemetry store runs an :class:`AlertNode` (a lone
instance simply always wins the election):

* the leader (:class:`~.leadership.Leadership` over the ``alerting`` lease)
  runs the alert engine, the notification dispatcher and the
  :class:`~.commands.CommandRunner`; on election it reads the API's rules, the
  alerts and the silences from the store, so it goes on where the previous
  leader stopped;
* the others refresh, every :data:`FOLLOW_INTERVAL` seconds, what the admin
  API shows from the store (active alerts, silences, rules), and forward
  admin changes to the leader (:meth:`~..alerts.engine.AlertEngine.forward`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from digitalme.monitoring.alerts.catalog import RuleCatalog
from digitalme.monitoring.alerts.engine import AlertEngine
from digitalme.monitoring.cluster.commands import CommandKind, CommandQueue, CommandRunner
from digitalme.monitoring.cluster.leadership import Leadership
from digitalme.monitoring.cluster.lease import Lease
from digitalme.monitoring.notifiers.dispatcher import Dispatcher
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.telemetry.items import Severity

__all__ = ["ALERTING_LEASE", "FOLLOW_INTERVAL", "AlertNode"]

log = structlog.get_logger("digitalme.monitoring.cluster")

ALERTING_LEASE = "alerting"
FOLLOW_INTERVAL = 1.0
"""Seconds between a follower's reads of the alerts, silences and rules."""


class AlertNode:
    """Runs the engine and the dispatcher while this instance leads; mirrors otherwise."""

    def __init__(
        self,
        lease: Lease,
        engine: AlertEngine,
        catalog: RuleCatalog,
        dispatcher: Dispatcher,
        queue: CommandQueue,
        *,
        strict: bool = False,
    ) -> None:
        self.lease = lease
        self.engine = engine
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.queue = queue
        self.strict = strict
        self.runner = CommandRunner(
            queue, self.apply, alone=lambda: self.engine.alone, strict=strict
        )
        self.leadership = Leadership(
            lease, on_elected=self._elected, on_demoted=self._demoted, strict=strict
        )
        self._follow_task: asyncio.Task[None] | None = None
        self.follow_errors = 0
        self._outages = Outages(
            "digitalme.monitoring.cluster",
            failed="alert_mirror_unavailable",
            recovered="alert_mirror_recovered",
        )

    @property
    def leading(self) -> bool:
        return self.leadership.leading

    async def start(self) -> None:
        self.engine.forward = self.queue
        await self.leadership.start()
        if not self.leading:
            await self._refresh_guarded()
        self._follow_task = asyncio.create_task(self._follow(), name="alert-follower")

    async def stop(self) -> None:
        if self._follow_task is not None:
            self._follow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow_task
            self._follow_task = None
        await self.leadership.stop()

    async def _elected(self) -> None:
        await self._load_rules()
        await self.engine.start()
        await self.dispatcher.start()
        self.runner.start()

    async def _demoted(self) -> None:
        await self.runner.stop()
        await self.engine.stop()
        await self.dispatcher.stop()
        await self._refresh_guarded()  # show the store's alerts, not the ones held until now

    async def _load_rules(self) -> None:
        try:
            await self.catalog.load()
        except Exception as exc:
            if self.strict:
                raise
            log.warning("saved_alert_rules_unavailable", error=type(exc).__name__)

    async def apply(self, kind: CommandKind, body: dict[str, Any]) -> dict[str, Any]:
        """Apply one forwarded change with this (the leader's) engine."""
        engine = self.engine
        if kind is CommandKind.RAISE:
            alert = await engine.raise_alert(
                str(body["title"]),
                str(body.get("description", "")),
                Severity(body["severity"]),
                body["category"],
                dict(body.get("properties") or {}),
                list(body.get("components") or ()),
                labels=dict(body.get("labels") or {}),
            )
            return {"alert_id": alert.id}
        if kind is CommandKind.RESOLVE:
            alert = await engine.resolve(str(body["alert_id"]), str(body["resolved_by"]))
            return {"alert_id": alert.id}
        await self.catalog.load()
        await engine.reload_silences()
        return {}

    async def refresh_mirror(self) -> None:
        """Read what the admin API shows from the store (on a follower)."""
        store = self.engine.store
        alerts = await store.load_active()
        silences = await store.list_silences(active_at=None)
        if not self.leading:
            self.engine.mirror(alerts, silences)
            await self.catalog.load()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL)
            if not self.leading:
                await self._refresh_guarded()

    async def _refresh_guarded(self) -> None:
        try:
            await self.refresh_mirror()
            self._outages.recovered("store")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            self.follow_errors += 1
            self._outages.failed("store", type(exc).__name__)
