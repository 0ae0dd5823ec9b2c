"""The monitoring layer's one entry point: ``Monitoring.from_settings(...).install(app)``."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from digitalme.monitoring.access import IdentifyCaller, from_authorize
from digitalme.monitoring.alerts import (
    AlertEngine,
    AlertEvent,
    AlertRule,
    AlertStore,
    InMemoryAlertStore,
    SqlAlertStore,
    load_rules,
)
from digitalme.monitoring.alerts.api import alert_routes
from digitalme.monitoring.alerts.catalog import RuleCatalog
from digitalme.monitoring.alerts.engine import Route as AlertRoute
from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.cluster.api import cluster_routes
from digitalme.monitoring.cluster.commands import CommandQueue
from digitalme.monitoring.cluster.lease import Lease
from digitalme.monitoring.cluster.node import ALERTING_LEASE, AlertNode
from digitalme.monitoring.cluster.remote import RemoteBuckets, RemoteSecurityEvents
from digitalme.monitoring.dashboard.api import MetricsReaders, metrics_routes
from digitalme.monitoring.dashboard.backplane import backplane_check
from digitalme.monitoring.dashboard.business import BusinessReader
from digitalme.monitoring.dashboard.figures import HostFigures
from digitalme.monitoring.dashboard.hub import Hub
from digitalme.monitoring.dashboard.hub_routes import hub_routes
from digitalme.monitoring.dashboard.hub_snapshot import LiveSnapshot
from digitalme.monitoring.dashboard.overview import Overview
from digitalme.monitoring.dashboard.page import page_routes
from digitalme.monitoring.dashboard.performance import PerformanceReader
from digitalme.monitoring.dashboard.security import SecurityReader
from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.store_backplane import hub_backplane
from digitalme.monitoring.dashboard.system import ProcessStats
from digitalme.monitoring.health.builtin import add_builtin_checks
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.registry import READY
from digitalme.monitoring.health.service import HealthMonitor
from digitalme.monitoring.named_route import NamedRoute
from digitalme.monitoring.notifiers import NotificationKind, Notifier, Router, build_notifiers
from digitalme.monitoring.notifiers.api import notification_routes
from digitalme.monitoring.notifiers.dispatcher import Dispatcher
from digitalme.monitoring.storage import RetentionJob, TelemetryStore
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import REQUEST_DURATION, TelemetryClient
from digitalme.monitoring.telemetry.enrichment import Enricher
from digitalme.monitoring.telemetry.instrumentation.asgi import TelemetryMiddleware
from digitalme.monitoring.telemetry.performance import PerformanceMonitor
from digitalme.monitoring.telemetry.pipeline import TelemetryPipeline
from digitalme.monitoring.telemetry.prometheus import (
    Authorize,
    TelemetryCollector,
    metrics_endpoint,
    serve_on_port,
)
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.telemetry.sampling import Sampler
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import TelemetrySink
from digitalme.monitoring.telemetry.system import SystemSampler
from digitalme.monitoring.telemetry.users import ActiveUsers
from digitalme.monitoring.uptime.api import uptime_routes
from digitalme.monitoring.uptime.service import UptimeMonitor
from digitalme.monitoring.uptime.status_page import status_routes
from digitalme.monitoring.uptime.store import UptimeStore
from digitalme.settings import Settings

log = structlog.get_logger("digitalme.monitoring")


def default_instance_id() -> str:
    """``host-pid-random``: readable in the admin API, unique even for a restarted
    container (same host name, same pid) whose predecessor's buckets are still kept."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:60] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def alert_route(router: Router) -> AlertRoute:
    """The engine's ``route`` over the notifiers' :class:`Router`.

    The event's kind becomes the notification kind, the rule's
    ``notification_channels`` (None for manual and security alerts) override the
    routing, and ``fired_channels`` (where the alert's firing notice went) serve
    ``resolved_to_firing_channels``.
    """

    def route(
        event: AlertEvent, rule: AlertRule | None, fired_channels: Sequence[str]
    ) -> list[str]:
        rule_channels = None if rule is None else rule.notification_channels
        return router.channels(
            event.severity,
            NotificationKind(str(event.kind)),
            rule_channels,
            fired_channels=fired_channels,
        )

    return route


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class Monitoring:
    """Telemetry, health checks (and, as they land, alerts, dashboards, uptime) for one ASGI app.

    ``health`` holds the built-in checks the settings ask for; the host adds its
    own with ``monitoring.health.add(...)``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sinks: Sequence[TelemetrySink] = (),
        store: TelemetryStore | None = None,
        version: str = "0.0.0",
        instance: str | None = None,
        strict: bool = False,
    ) -> None:
        telemetry = settings.telemetry
        self.settings = settings
        self.clock = clock or SystemClock()
        self.instance = instance or settings.cluster.instance_id or default_instance_id()
        self.bus = EventBus()
        self.store = store
        self.retention = (
            RetentionJob(store, telemetry.retention, clock=self.clock)
            if store is not None
            else None
        )
        self.registry = SeriesRegistry(telemetry.max_series_per_metric)
        self.buffer = ItemBuffer(telemetry.buffer_size)
        self.aggregator = Aggregator(
            self.registry, telemetry.bucket_seconds, telemetry.live_window_seconds
        )
        self.users = ActiveUsers(telemetry.live_window_seconds)
        self.redactor = Redactor(
            settings.custom_telemetry.sensitive_data_fields, telemetry.max_property_length
        )
        self.pipeline = TelemetryPipeline(
            clock=self.clock,
            buffer=self.buffer,
            registry=self.registry,
            users=self.users,
            aggregator=self.aggregator,
            enricher=Enricher(
                settings.custom_telemetry.global_properties,
                environment=str(settings.environment),
                version=version,
                redactor=self.redactor,
            ),
            redactor=self.redactor,
            sinks=sinks,
            tick=telemetry.aggregation_tick,
            flush_interval=telemetry.flush_interval,
            instance=self.instance,
        )
        self.client = TelemetryClient(
            clock=self.clock,
            buffer=self.buffer,
            registry=self.registry,
            sampler=Sampler(
                telemetry.sampling_percentage,
                adaptive=telemetry.enable_adaptive_sampling,
                target_per_second=telemetry.adaptive_target_items_per_second,
            ),
            bus=self.bus,
            users=self.users,
            strict=strict,
        )
        self.performance = PerformanceMonitor(self.client, self.clock)
        self.system = (
            SystemSampler(self.client, telemetry.system_sample_interval, clock=self.clock)
            if telemetry.enabled and telemetry.enable_performance_counters
            else None
        )
        self.collector = TelemetryCollector(self.aggregator, self.pipeline)
        self.health = HealthMonitor(
            settings.health,
            clock=self.clock,
            redactor=self.redactor,
            telemetry=self.client,
            bus=self.bus,
        )
        add_builtin_checks(self.health, settings, store=store, clock=self.clock)
        # A bad rule file raises RuleFileError here: start-up stops with its one-line message.
        self.alerts: AlertEngine | None = None
        # With a store, instances sharing it elect one to evaluate and notify (a lone one
        # always wins); its alert writes are fenced by the lease.
        cluster = settings.cluster
        self.lease = (
            Lease(
                store.engine,
                ALERTING_LEASE,
                self.instance,
                ttl=cluster.lease_seconds,
                clock=self.clock,
            )
            if store is not None and settings.alerting.enabled
            else None
        )
        if settings.alerting.enabled:
            alert_store: AlertStore = InMemoryAlertStore()
            remote: RemoteBuckets | None = None
            remote_security: RemoteSecurityEvents | None = None
            if store is not None and self.lease is not None:
                alert_store = SqlAlertStore(store.engine, fence=self.lease.fence)
                remote = RemoteBuckets(
                    store.engine,
                    self.instance,
                    resolution=self.aggregator.resolution,
                    window=float(telemetry.live_window_seconds),
                    clock=self.clock,
                )
                remote_security = RemoteSecurityEvents(
                    store.engine, self.instance, clock=self.clock
                )
            self.alerts = AlertEngine(
                load_rules(settings),
                self.aggregator,
                self.clock,
                alert_store,
                alert_route(Router.from_settings(settings.notifications)),
                self.bus,
                settings.alerting,
                remote=remote,
                remote_security=remote_security,
                remote_poll_interval=cluster.remote_poll_interval,
                strict=strict,
            )
        # Uptime: the prober's rounds become heartbeats; maintenance windows silence alerts.
        self.uptime: UptimeMonitor | None = None
        if store is not None and settings.uptime.enabled:
            self.uptime = UptimeMonitor(
                settings.uptime,
                UptimeStore(store.engine),
                clock=self.clock,
                probe_interval=settings.health.probe_interval,
                telemetry=self.client,
                strict=strict,
            )
            self.health.prober.add_listener(self.uptime.on_report)
            if self.alerts is not None:
                self.alerts.silence_source = self.uptime.calendar.silences
        self.strict = strict
        # The metrics API: vitals since start() (ProcessStats keeps the start time) and
        # series from the store when there is one, else from the live aggregates.
        self.process_stats = ProcessStats(self.clock)
        self.host_figures = HostFigures()  # the host registers what only it knows
        self.series = SeriesReader(self.aggregator, store.query if store is not None else None)
        self.rule_catalog: RuleCatalog | None = None
        if self.alerts is not None:
            self.rule_catalog = RuleCatalog(
                self.alerts.rules,
                self.alerts,
                self.clock,
                max_window=float(settings.telemetry.live_window_seconds),
            )
        dashboard = settings.dashboard
        self.performance_reader = PerformanceReader(
            self.series,
            self.host_figures,
            apdex_threshold_ms=dashboard.apdex_threshold_ms,
            slow_query_ms=dashboard.slow_query_ms,
        )
        self.security_reader = SecurityReader(self.series, self.host_figures)
        self.business_reader = BusinessReader(self.series, self.users)
        self.metrics_readers = MetricsReaders(
            series=self.series,
            stats=self.process_stats,
            performance=self.performance_reader,
            security=self.security_reader,
            business=self.business_reader,
            overview=Overview(
                stats=self.process_stats,
                sections=[
                    ("performance", self.performance_reader),
                    ("security", self.security_reader),
                    ("business", self.business_reader),
                ],
                health=self.health.report,
                active_alerts=self._active_alerts,
            ),
        )
        # The live hub: pushes health, alerts, security events and snapshots to admins;
        # with Redis, the shared ones reach the clients of every instance.
        self.backplane = hub_backplane(
            settings,
            engine=None if store is None else store.engine,
            instance=self.instance,
            clock=self.clock,
        )
        if self.backplane is not None:
            self.health.add(
                backplane_check(self.backplane),
                failure_status=HealthStatus.DEGRADED,
                tags=(READY,),
            )
        self.hub = Hub(
            self.bus,
            clock=self.clock,
            snapshot=LiveSnapshot(
                self.aggregator,
                interval=dashboard.snapshot_interval,
                clock=self.clock,
                active_alerts=self._active_alert_count,
                # the other instances' requests of the last minute (and a bucket more)
                remote=None
                if store is None
                else RemoteBuckets(
                    store.engine,
                    self.instance,
                    resolution=self.aggregator.resolution,
                    window=60.0 + self.aggregator.resolution,
                    clock=self.clock,
                    names=[REQUEST_DURATION],
                ),
            ),
            redactor=self.redactor,
            health_status=self.health.prober.status,
            max_connections=dashboard.max_connections,
            stall_timeout=dashboard.client_stall_timeout,
            backplane=self.backplane,
            instance=self.instance,
            strict=strict,
        )
        # Delivery: one notifier per enabled channel, and the dispatcher of the outbox.
        self.notifiers: dict[str, Notifier] = build_notifiers(
            settings.notifications, clock=self.clock
        )
        self.dispatcher: Dispatcher | None = None
        if self.alerts is not None:
            self.dispatcher = Dispatcher(
                self.alerts.store,
                self.notifiers,
                self.clock,
                settings.notifications.delivery,
                self.bus,
                may_send=None if self.lease is None else self.lease.held,
                strict=strict,
            )
        self.alert_node: AlertNode | None = None
        if (
            store is not None
            and self.lease is not None
            and self.alerts is not None
            and self.rule_catalog is not None
            and self.dispatcher is not None
        ):
            self.alert_node = AlertNode(
                self.lease,
                self.alerts,
                self.rule_catalog,
                self.dispatcher,
                CommandQueue(store.engine, self.clock, timeout=cluster.command_timeout),
                strict=strict,
            )
        self._running = False
        self._stop_metrics_port: Callable[[], None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        version: str = "0.0.0",
        extra_sinks: Sequence[TelemetrySink] = (),
    ) -> Monitoring:
        """The default set-up: the embedded telemetry store (migrated by ``db upgrade``), plus
        the OTLP and Application Insights exporters when their connection strings are set."""
        clock = clock or SystemClock()
        store = TelemetryStore(settings.telemetry_store_url, clock=clock)
        sinks: list[TelemetrySink] = [store, *extra_sinks]
        strings = settings.connection_strings
        # Each signal of an export may take up to its timeout (three signals a write).
        if strings.otlp_endpoint:
            from digitalme.monitoring.telemetry.exporters import OtlpSink

            sinks.append(OtlpSink(strings.otlp_endpoint, timeout=3.0, service_version=version))
        if strings.application_insights is not None:
            from digitalme.monitoring.telemetry.exporters import AzureMonitorSink

            sinks.append(
                AzureMonitorSink(
                    strings.application_insights.get_secret_value(),
                    timeout=3.0,
                    service_version=version,
                )
            )
        return cls(settings, clock=clock, store=store, sinks=sinks, version=version)

    def _active_alerts(self) -> list[dict[str, Any]]:
        return [] if self.alerts is None else [a.to_dict() for a in self.alerts.active_alerts()]

    def _active_alert_count(self) -> int:
        return 0 if self.alerts is None else len(self.alerts.active_alerts())

    async def start(self) -> None:
        if self._running:
            return
        self.process_stats.mark_started()
        self.pipeline.start()
        if self.retention is not None:
            self.retention.start()
        if self.system is not None:
            await self.system.start()
        metrics = self.settings.metrics
        if metrics.enabled and metrics.port is not None:
            self._stop_metrics_port = serve_on_port(
                self.collector, metrics.port, self.settings.server.host
            )
        if self.uptime is not None:
            await self.uptime.start()
        self.hub.start()  # its backplane connects before the first probe asks about it
        self.health.start()
        if self.alert_node is not None:
            await self.alert_node.start()  # the engine and dispatcher run on the leader
        else:
            if self.rule_catalog is not None:
                await self._load_saved_rules(self.rule_catalog)
            if self.alerts is not None:
                await self.alerts.start()
            if self.dispatcher is not None:
                await self.dispatcher.start()
        self._running = True

    async def _load_saved_rules(self, catalog: RuleCatalog) -> None:
        """Rules saved through the API join the file and default ones (best effort)."""
        try:
            await catalog.load()
        except Exception as exc:
            if self.strict:
                raise
            log.warning("saved_alert_rules_unavailable", error=type(exc).__name__)

    async def stop(self) -> None:
        """Drain everything captured so far into the sinks, then stop."""
        if not self._running:
            return
        await self.hub.stop()
        await self.health.stop()
        if self.uptime is not None:
            await self.uptime.stop()
        if self.alert_node is not None:
            await self.alert_node.stop()  # steps down: another instance takes over at once
        else:
            if self.alerts is not None:
                await self.alerts.stop()
            if self.dispatcher is not None:
                await self.dispatcher.stop()
        for notifier in self.notifiers.values():
            await notifier.aclose()
        if self._stop_metrics_port is not None:
            self._stop_metrics_port()
            self._stop_metrics_port = None
        if self.system is not None:
            await self.system.stop()
        if self.retention is not None:
            await self.retention.stop()
        await self.pipeline.stop()
        self._running = False

    def routes(
        self,
        authorize: Authorize,
        *,
        identify: IdentifyCaller | None = None,
        sign_in_path: str | None = None,
    ) -> list[BaseRoute]:
        """Routes to mount on the app: the health endpoints, ``/metrics`` unless it is
        disabled or on its own port, the admin alert, notification and metrics API,
        the live hub (``/hubs/metrics``, WebSocket, and ``/hubs/metrics/events``, SSE)
        and, given the host's ``sign_in_path``, the web dashboard (``/dashboard``).

        ``authorize`` tells whether a request is an admin's: admins may read the
        metrics (as may a configured scrape token) and see health details.
        ``identify`` tells the admin API who is asking (401, 403, or an admin's
        name for ``resolved_by``); without it a refused ``authorize`` is a 401.
        ``sign_in_path`` is the host's login route, which the page posts
        ``{"email", "password"}`` to (see :mod:`.dashboard.page`).
        """
        routes = self.health.routes(authorize)
        metrics = self.settings.metrics
        if metrics.enabled and metrics.port is None:
            endpoint = metrics_endpoint(self.collector, metrics, authorize)
            routes.append(
                NamedRoute("/metrics", endpoint, methods=["GET"], include_in_schema=False)
            )
        # The admin API: 401 / 403 need to know who is asking, not only whether it is an admin.
        who = identify or from_authorize(authorize)
        if self.alerts is not None and self.rule_catalog is not None:
            routes += alert_routes(self.alerts, self.rule_catalog, who, strict=self.strict)
        routes += metrics_routes(
            self.metrics_readers,
            clock=self.clock,
            settings=self.settings.dashboard,
            identify=who,
            strict=self.strict,
        )
        routes += hub_routes(self.hub, who, strict=self.strict)
        routes += notification_routes(self.notifiers, self.clock, who, strict=self.strict)
        if self.uptime is not None:
            routes += uptime_routes(self.uptime, who, strict=self.strict)
        if self.store is not None:
            routes += cluster_routes(
                instance=self.instance,
                engine=self.store.engine,
                clock=self.clock,
                node=self.alert_node,
                backplane=self.backplane,
                identify=who,
                strict=self.strict,
            )
        if self.uptime is not None and self.settings.uptime.status_page.enabled:
            # The public status page: no sign-in, public names and figures only.
            routes += status_routes(
                self.uptime, self.settings.uptime.status_page, strict=self.strict
            )
        dashboard = self.settings.dashboard
        if sign_in_path is not None and dashboard.page_enabled:
            routes += page_routes(
                sign_in_path=sign_in_path, snapshot_interval=dashboard.snapshot_interval
            )
        return routes

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap an ASGI app with request collection."""
        return TelemetryMiddleware(app, client=self.client, clock=self.clock)

    def wrap_lifespan(self, lifespan: Lifespan) -> Lifespan:
        """A lifespan that starts monitoring before the app's and stops it after."""

        @asynccontextmanager
        async def combined(app: Any) -> AsyncIterator[Any]:
            await self.start()
            try:
                async with lifespan(app) as state:
                    try:
                        yield state
                    finally:
                        # The host's checks use its resources (database, HTTP clients),
                        # which its lifespan releases on the way out: stop probing first.
                        await self.health.stop()
            finally:
                await self.stop()

        return combined
