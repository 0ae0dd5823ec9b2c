"""The alert engine: detection only. It evaluates, keeps alert state, and writes events.

Every ``alerting.tick`` (250 ms) :meth:`AlertEngine.evaluate` computes each
enabled rule over the live aggregates (:mod:`.evaluation`) and moves each
instance (one per rule and group) through its states:

* breaching with no instance: a new alert, **pending** (``min_duration`` > 0)
  or straight away **firing**; a pending alert fires once it has breached for
  ``min_duration`` (its ``pending_since`` is stored, so the timer survives a
  restart), and is dropped (never notified) when the breach ends before that;
* firing: stays while the value meets the condition, or the ``clear_threshold``
  when one is set (hysteresis); otherwise it **resolves**, unless it met the
  condition less than ``keep_firing_for`` ago;
* a window without enough data (fewer than ``min_data_points`` values) follows
  the rule's ``no_data``: ``ok`` (the condition does not hold), ``alerting``
  (it holds) or ``keep_state``;
* ``repeat_interval``: a still-firing alert gets a ``repeated`` event once per
  interval.

Each fired, repeated or resolved :class:`~.model.AlertEvent` is written with
the alert's new state and one outbox delivery per channel that ``route`` names
*in the same transaction* (:meth:`~.store.AlertStore.apply`); the dispatcher
sends them. Deliveries of an alert matched by an active silence are written
``suppressed``. After the commit each event is published on the bus topic
``alert.event``. When the store is down, changes wait in memory (bounded) and
are written, in order, once it is back.

Security events (:mod:`.security`) are handled as they arrive, without
waiting for a tick. Alerts can also be raised and resolved by hand
(:meth:`AlertEngine.raise_alert`, :meth:`AlertEngine.resolve`).

**Resolving by hand while the condition still holds.** The alert is resolved
(a ``resolved`` event, ``resolved_by`` recorded) and its fingerprint is
*muted*: no new alert of the same rule and group is created until the
condition has been seen clear once (for security alerts: the source quiet for
the group window), or until ``alerting.resolve_mute`` (1 h) has passed. If the
problem is still there after the mute, it fires again, once: there is never a
notification loop.

One rule that raises while being evaluated is logged and counted
(:attr:`AlertEngine.rule_errors`); the other rules and the loop carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from digitalme.monitoring.alerts.errors import (
    AlertError,
    AlertNotFound,
    AlertStoreUnavailable,
    LeaderUnavailable,
    SilenceNotFound,
)
from digitalme.monitoring.alerts.evaluation import LiveSource, WindowReader, evaluate_rule
from digitalme.monitoring.alerts.model import (
    MANUAL_RULE_ID,
    SECURITY_RULE_ID,
    Alert,
    AlertCategory,
    AlertEvent,
    AlertEventKind,
    AlertState,
    fingerprint_of,
    new_id,
)
from digitalme.monitoring.alerts.rules import AlertRule, NoDataMode
from digitalme.monitoring.alerts.security import (
    SECURITY_TOPICS,
    SecurityGroup,
    details_of,
    security_group,
)
from digitalme.monitoring.alerts.silences import Silence, silenced_by
from digitalme.monitoring.alerts.store import (
    AlertChanges,
    AlertStore,
    DeliveryStatus,
    NewDelivery,
    idempotency_key,
    snapshot,
)
from digitalme.monitoring.bus import BusMessage, EventBus, Subscription
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.cluster.commands import CommandKind, CommandQueue
from digitalme.monitoring.cluster.remote import (
    ALONE_INTERVAL,
    MergedSource,
    RemoteBuckets,
    RemoteSecurityEvents,
)
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity
from digitalme.settings import AlertingSettings

__all__ = ["ALERT_EVENT_TOPIC", "AlertEngine", "Route"]

log = structlog.get_logger("digitalme.monitoring.alerts")

ALERT_EVENT_TOPIC = "alert.event"
Route = Callable[[AlertEvent, AlertRule | None, Sequence[str]], Sequence[str]]
"""``route(event, rule, fired_channels)``: the channels an event goes to. ``rule`` is None
for manual and security alerts; ``fired_channels`` are the channels the alert's fired
notice went to (for resolved notices)."""

STATE_SYNC_SECONDS = 5.0
"""Value and count changes without an event are written at most this often."""
SECURITY_QUEUE_SIZE = 100_000
MAX_QUEUED_EVENTS = 10_000
"""Events kept in memory while the store is down; past it the oldest are dropped (counted)."""
MAX_PROPERTY_KEYS = 50
MAX_FINGERPRINT_CACHE = 100_000
MAX_SILENCES = 10_000
REMOTE_SECURITY_CATCH_UP = 30.0
"""Seconds of security events before an election the new leader reads again."""
MAX_RETRY_DELAY = 5.0
"""Longest pause, in seconds, between attempts to reach a store that is down."""


class AlertEngine:
    """Evaluates rules on a tick, groups security events, keeps alerts; sends nothing."""

    def __init__(
        self,
        rules: Iterable[AlertRule],
        aggregator: Aggregator,
        clock: Clock,
        store: AlertStore,
        route: Route,
        bus: EventBus | None = None,
        settings: AlertingSettings | None = None,
        *,
        remote: RemoteBuckets | None = None,
        remote_security: RemoteSecurityEvents | None = None,
        remote_poll_interval: float = 0.25,
        strict: bool = False,
    ) -> None:
        self.settings = settings or AlertingSettings()
        self.aggregator = aggregator
        self.clock = clock
        self.store = store
        self.route = route
        self.bus = bus
        self.strict = strict  # tests: a rule's exception is raised, not only counted
        self._rules: dict[str, AlertRule] = {}
        self.set_rules(rules)
        self._instances: dict[str, dict[str, Alert]] = {}  # rule id -> fingerprint -> alert
        self._by_id: dict[str, Alert] = {}
        self._muted: dict[str, Alert] = {}  # fingerprint -> resolved alert muting it
        self._dirty: dict[str, Alert] = {}  # alert id -> alert changed without an event
        self._silences: dict[str, Silence] = {}
        # silences kept elsewhere (maintenance windows), asked for at each use
        self.silence_source: Callable[[datetime], Iterable[Silence]] | None = None
        # several instances: while another one leads, admin changes go to it through
        # ``forward`` and the alerts shown are the store's (``mirror``)
        self.forward: CommandQueue | None = None
        self._mirrored: list[Alert] | None = None
        self._reader = WindowReader()
        live = LiveSource(
            aggregator.live_buckets(),
            aggregator.resolution,
            aggregator.totals,
            lambda: aggregator.series_generation,
        )
        # with other instances on the store: their buckets and security events too
        self.remote = remote
        self.remote_security = remote_security
        self.remote_poll_interval = remote_poll_interval
        self._source: LiveSource | MergedSource = (
            live if remote is None else MergedSource(live, remote)
        )
        self._remote_due = -math.inf
        self._remote_outages = Outages(
            "digitalme.monitoring.alerts",
            failed="remote_telemetry_unavailable",
            recovered="remote_telemetry_recovered",
        )
        self.remote_errors = 0
        self._fingerprints: dict[tuple[str, tuple[str, ...]], str] = {}
        self._quiet: dict[str, dict[tuple[str, ...], tuple[object, ...]]] = {}
        self._queue = AlertChanges()
        self._lock = asyncio.Lock()
        self._restored = False
        self._restored_event = asyncio.Event()
        self._last_sync = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._security_task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._failing = False
        self._retry_at = -math.inf
        self._retry_delay = 0.0
        # counters (exposed for tests, metrics and the API)
        self.rule_errors: Counter[str] = Counter()
        self.ticks = 0
        self.loop_errors = 0
        self.store_errors = 0
        self.dropped_instances = 0
        self.dropped_events = 0
        self.security_events = 0

    # -- rules -------------------------------------------------------------------

    @property
    def rules(self) -> list[AlertRule]:
        return list(self._rules.values())

    def set_rules(self, rules: Iterable[AlertRule]) -> None:
        """Replace the rule set; instances of removed or disabled rules resolve on the next tick."""
        found: dict[str, AlertRule] = {}
        for rule in rules:
            if rule.id in found:
                raise ValueError(f"two rules have the id {rule.id!r}")
            found[rule.id] = rule
        self._rules = found
        self._quiet = {}  # what was quiet under the old definitions may not be now
        self._fingerprints = {}

    # -- lifecycle -----------------------------------------------------------------

    @property
    def alone(self) -> bool:
        """No other instance's telemetry is seen (or none is read): the store is polled slowly."""
        return self.remote is None or self.remote.alone

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Subscribe to security events, then restore state and tick in the background.

        Each start reads the state from the store again: an instance that becomes the
        leader takes over what the previous one left, not what it held itself before.
        """
        if self.running:
            return
        self._restored = False
        self._restored_event.clear()
        self._queue = AlertChanges()
        self._dirty.clear()
        self._mirrored = None
        self._remote_due = -math.inf
        if self.remote is not None:
            self.remote.reset()
        if self.remote_security is not None:
            # events other instances recorded while nobody led are read too
            self.remote_security.begin(catch_up=REMOTE_SECURITY_CATCH_UP)
        with contextlib.suppress(AlertStoreUnavailable):
            await self.restore()  # else the tick loop tries again
        if self.bus is not None and self.settings.security_alerts and self._subscription is None:
            self._subscription = self.bus.subscribe(*SECURITY_TOPICS, maxsize=SECURITY_QUEUE_SIZE)
        self._task = asyncio.create_task(self._run(), name="alert-engine")
        if self._subscription is not None:
            self._security_task = asyncio.create_task(
                self._consume(self._subscription), name="alert-engine-security"
            )

    async def stop(self) -> None:
        """Stop ticking and listening, and write what is still in memory (best effort)."""
        for task in (self._task, self._security_task):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        self._task = self._security_task = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._restored:
            changes = AlertChanges()
            self._sync_dirty(changes, force=True)
            with contextlib.suppress(Exception):
                await self._commit(changes)

    async def restore(self) -> None:
        """Load active alerts, pending timers, mutes and silences from the store.

        Raises :class:`AlertStoreUnavailable` when the store cannot be read.
        """
        try:
            alerts = await self.store.load_active()
            silences = await self.store.list_silences(active_at=None)
        except Exception as exc:
            raise AlertStoreUnavailable(exc) from exc
        now = self.clock.now()
        silences = [silence for silence in silences if silence.ends_at > now]
        self._instances.clear()
        self._by_id.clear()
        self._muted.clear()
        for alert in alerts:
            if alert.state is AlertState.RESOLVED:
                self._muted[alert.fingerprint] = alert
            else:
                self._add(alert)
        self._silences = {silence.id: silence for silence in silences}
        self._restored = True
        self._restored_event.set()
        self._last_sync = self.clock.monotonic()
        if self._by_id or self._muted:
            log.info("alert_engine_restored", active=len(self._by_id), muted=len(self._muted))

    async def _run(self) -> None:
        tick = self.settings.tick
        delay = tick
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if not self._restored:
                    await self.restore()
                await self.evaluate()
                # Ticks start every ``tick`` seconds, however long evaluating took.
                delay = max(0.0, tick - (loop.time() - started))
                if self._failing:
                    self._failing = False
                    log.info("alert_engine_recovered", errors=self.loop_errors)
            except asyncio.CancelledError:
                raise
            except AlertStoreUnavailable as exc:
                # Detection goes on (changes wait in memory); before the first restore it
                # cannot, and the store is asked again after a growing pause.
                self.loop_errors += 1
                if not self._restored:
                    delay = min(max(delay * 2, tick), MAX_RETRY_DELAY)
                if not self._failing:  # one line per outage, not one per tick
                    self._failing = True
                    log.warning("alert_store_unavailable", error=exc.cause_type)
            except Exception:
                self.loop_errors += 1
                if not self._failing:
                    self._failing = True
                    log.exception("alert_engine_tick_failed")
            await asyncio.sleep(delay)

    # -- evaluation ------------------------------------------------------------------

    async def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """One tick at ``now`` (epoch seconds; the clock's time by default).

        Returns the events it produced (they are committed, or queued when the
        store is down).
        """
        if not self._restored:
            await self.restore()
        moment = self.clock.time() if now is None else now
        at = datetime.fromtimestamp(moment, UTC)
        changes = AlertChanges()
        # Values recorded since the pipeline's last fold count now, not one
        # aggregation tick later: the breach is seen on the first engine tick after it.
        self.aggregator.fold_pending(moment)
        await self._read_remote()
        self._source.refresh()
        self._reader.begin(self._source, moment)
        for rule in self._rules.values():
            if not rule.enabled:
                continue
            try:
                self._evaluate_rule(rule, at, changes)
            except Exception:
                self.rule_errors[rule.id] += 1
                if self.strict:
                    raise
                if self.rule_errors[rule.id] == 1 or self.rule_errors[rule.id] % 1000 == 0:
                    log.exception(
                        "alert_rule_failed", rule=rule.id, errors=self.rule_errors[rule.id]
                    )
        self._retire_orphans(at, changes)
        self._expire_security(at, changes)
        self._expire_mutes(at, changes)
        self._forget_ended_silences(at)
        self._sync_dirty(changes)
        self.ticks += 1
        await self._commit(changes)
        return list(changes.events)

    async def _read_remote(self) -> None:
        """The other instances' new buckets and security events, every
        ``remote_poll_interval`` (every :data:`ALONE_INTERVAL` while none is seen; a
        failure is logged once and evaluation goes on with what was read before)."""
        if self.remote is None and self.remote_security is None:
            return
        now = self.clock.monotonic()
        if now < self._remote_due:
            return
        self._remote_due = now + self.remote_poll_interval
        try:
            if self.remote is not None:
                await self.remote.refresh()
                if self.remote.alone:
                    self._remote_due = now + max(self.remote_poll_interval, ALONE_INTERVAL)
            found = [] if self.remote_security is None else await self.remote_security.poll()
        except Exception as exc:
            if self.strict:
                raise
            self.remote_errors += 1
            self._remote_outages.failed("store", type(exc).__name__)
            return
        self._remote_outages.recovered("store")
        if found and self.settings.security_alerts:
            await self.handle_security([BusMessage(topic, item) for topic, item in found])

    def _evaluate_rule(self, rule: AlertRule, at: datetime, changes: AlertChanges) -> None:
        # Groups with nothing to do (no alert, no mute, not breaching) whose data have not
        # changed since are skipped: with many groups, most ticks change only a few.
        quiet = self._quiet.get(rule.id, {})
        still_quiet: dict[tuple[str, ...], tuple[object, ...]] = {}

        def skip(group: tuple[str, ...], token: tuple[object, ...]) -> bool:
            previous = quiet.get(group)
            if previous is None or len(previous) != len(token):
                return False
            if all(a is b for a, b in zip(previous, token, strict=True)):
                still_quiet[group] = token
                return True
            return False

        samples = evaluate_rule(rule, self._reader, skip)
        instances = self._instances.get(rule.id, {})
        muted = self._muted
        alerting_without_data = rule.no_data is NoDataMode.ALERTING
        seen: set[str] = set()
        for sample in samples:
            fingerprint = self._fingerprint(rule.id, sample.group, sample.labels)
            seen.add(fingerprint)
            value = sample.value
            enough = value is not None and sample.points >= rule.min_data_points
            if fingerprint not in instances and fingerprint not in muted:
                # The common case, kept short: no alert, and nothing to start one.
                starts = (
                    rule.breaches(value)
                    if value is not None and sample.points >= rule.min_data_points
                    else alerting_without_data
                )
                if not starts:
                    still_quiet[sample.group] = sample.token
                    continue
            if not enough:
                self._no_data(rule, fingerprint, sample.labels, at, changes)
            else:
                assert sample.value is not None
                self._step(rule, fingerprint, sample.labels, sample.value, at, changes)
            if (
                fingerprint not in self._instances.get(rule.id, {})
                and fingerprint not in self._muted
                and not (enough and sample.value is not None and rule.breaches(sample.value))
                and not (not enough and rule.no_data is NoDataMode.ALERTING)
            ):
                still_quiet[sample.group] = sample.token
        self._quiet[rule.id] = still_quiet
        for fingerprint, alert in list(instances.items()):
            if fingerprint not in seen:
                group = {label: alert.labels.get(label, "") for label in rule.group_by}
                self._no_data(rule, fingerprint, group, at, changes)
        if self._muted and rule.no_data is NoDataMode.OK:
            # no data counts as the condition cleared: lift mutes left by a manual resolve
            for fingerprint, muting in list(self._muted.items()):
                if muting.rule_id == rule.id and fingerprint not in seen:
                    self._cleared(fingerprint, at, changes)
        if not samples and not still_quiet and rule.no_data is NoDataMode.ALERTING:
            group = dict.fromkeys(rule.group_by, "")
            fingerprint = fingerprint_of(rule.id, group)
            if fingerprint not in instances:
                self._no_data(rule, fingerprint, group, at, changes)

    def _fingerprint(self, rule_id: str, group: tuple[str, ...], labels: Mapping[str, str]) -> str:
        key = (rule_id, group)
        found = self._fingerprints.get(key)
        if found is None:
            if len(self._fingerprints) >= MAX_FINGERPRINT_CACHE:
                self._fingerprints.clear()
            found = self._fingerprints[key] = fingerprint_of(rule_id, labels)
        return found

    def _no_data(
        self,
        rule: AlertRule,
        fingerprint: str,
        group: Mapping[str, str],
        at: datetime,
        changes: AlertChanges,
    ) -> None:
        if rule.no_data is NoDataMode.KEEP_STATE:
            return
        breaching = rule.no_data is NoDataMode.ALERTING
        self._transition(rule, fingerprint, group, None, breaching, breaching, at, changes)

    def _step(
        self,
        rule: AlertRule,
        fingerprint: str,
        group: Mapping[str, str],
        value: float,
        at: datetime,
        changes: AlertChanges,
    ) -> None:
        breaching = rule.breaches(value)
        holding = rule.still_firing(value)
        self._transition(rule, fingerprint, group, value, breaching, holding, at, changes)

    def _transition(
        self,
        rule: AlertRule,
        fingerprint: str,
        group: Mapping[str, str],
        value: float | None,
        breaching: bool,
        holding: bool,
        at: datetime,
        changes: AlertChanges,
    ) -> None:
        """Move one instance given this tick's verdict (``holding``: with the clear threshold)."""
        alert = self._instances.get(rule.id, {}).get(fingerprint)
        if alert is None:
            if not breaching:
                self._cleared(fingerprint, at, changes)
                return
            if self._is_muted(fingerprint, at) or not self._has_room():
                return
            alert = self._new_rule_alert(rule, fingerprint, group, value, at)
            if rule.min_duration > 0:
                self._add(alert)
                changes.alerts.append(snapshot(alert))
                return
            self._add(alert)
            self._fire(alert, rule, at, changes)
            return
        if alert.state is AlertState.PENDING:
            if not breaching:
                self._drop_pending(alert, changes)
                self._cleared(fingerprint, at, changes)
                return
            alert.value = value
            alert.last_active_at = at
            pending_since = alert.pending_since or alert.created_at
            if (at - pending_since).total_seconds() >= rule.min_duration:
                self._fire(alert, rule, at, changes)
            else:
                self._touch(alert)
            return
        # firing
        if holding:
            alert.value = value
            alert.last_active_at = at
            last = alert.last_notified_at or alert.starts_at or alert.created_at
            if rule.repeat_interval is not None and (at - last).total_seconds() >= (
                rule.repeat_interval
            ):
                self._render(alert, rule)
                self._emit(alert, AlertEventKind.REPEATED, rule, at, changes)
            else:
                self._touch(alert)
            return
        active = alert.last_active_at or alert.starts_at or alert.created_at
        if rule.keep_firing_for > 0 and (at - active).total_seconds() < rule.keep_firing_for:
            alert.value = value
            self._touch(alert)
            return
        alert.value = value
        self._render(alert, rule)
        self._resolve(alert, rule, at, None, changes)

    def _new_rule_alert(
        self,
        rule: AlertRule,
        fingerprint: str,
        group: Mapping[str, str],
        value: float | None,
        at: datetime,
    ) -> Alert:
        labels = {
            "alertname": rule.id,
            "severity": str(rule.severity),
            "category": str(rule.category),
            **rule.labels,
            **group,
        }
        alert = Alert(
            rule_id=rule.id,
            fingerprint=fingerprint,
            title="",
            description="",
            severity=rule.severity,
            category=rule.category,
            state=AlertState.PENDING,
            created_at=at,
            pending_since=at,
            last_active_at=at,
            value=value,
            threshold=rule.threshold,
            labels=labels,
            properties={"metric": rule.metric_name, "aggregation": str(rule.aggregation)},
            updated_at=at,
        )
        self._render(alert, rule)
        return alert

    def _render(self, alert: Alert, rule: AlertRule) -> None:
        alert.title = rule.title(alert.value, alert.labels, alert.count)
        alert.description = rule.message(alert.value, alert.labels, alert.count)

    # -- state changes -----------------------------------------------------------------

    def _add(self, alert: Alert) -> None:
        self._instances.setdefault(alert.rule_id, {})[alert.fingerprint] = alert
        self._by_id[alert.id] = alert

    def _remove(self, alert: Alert) -> None:
        instances = self._instances.get(alert.rule_id)
        if instances is not None:
            instances.pop(alert.fingerprint, None)
            if not instances:
                del self._instances[alert.rule_id]
        self._by_id.pop(alert.id, None)
        self._dirty.pop(alert.id, None)

    def _has_room(self) -> bool:
        if len(self._by_id) < self.settings.max_active_alerts:
            return True
        self.dropped_instances += 1
        if self.dropped_instances == 1 or self.dropped_instances % 1000 == 0:
            log.warning(
                "alert_limit_reached",
                max_active_alerts=self.settings.max_active_alerts,
                dropped=self.dropped_instances,
            )
        return False

    def _touch(self, alert: Alert) -> None:
        self._dirty[alert.id] = alert

    def _fire(
        self, alert: Alert, rule: AlertRule | None, at: datetime, changes: AlertChanges
    ) -> None:
        alert.state = AlertState.FIRING
        alert.starts_at = at
        if rule is not None:
            self._render(alert, rule)
        self._emit(alert, AlertEventKind.FIRED, rule, at, changes)

    def _drop_pending(self, alert: Alert, changes: AlertChanges) -> None:
        self._remove(alert)
        changes.removed.append(alert.id)

    def _resolve(
        self,
        alert: Alert,
        rule: AlertRule | None,
        at: datetime,
        resolved_by: str | None,
        changes: AlertChanges,
    ) -> None:
        was_firing = alert.state is AlertState.FIRING
        alert.state = AlertState.RESOLVED
        alert.resolved_at = at
        alert.resolved_by = resolved_by
        self._remove(alert)
        if was_firing:
            self._emit(alert, AlertEventKind.RESOLVED, rule, at, changes)
        else:
            alert.updated_at = at
            changes.alerts.append(snapshot(alert))

    def _emit(
        self,
        alert: Alert,
        kind: AlertEventKind,
        rule: AlertRule | None,
        at: datetime,
        changes: AlertChanges,
    ) -> None:
        """Record an event of ``alert`` with its deliveries (suppressed when silenced)."""
        event = AlertEvent.of(alert, kind, at)
        silenced = silenced_by(self._active_silences(at), alert.labels, at) is not None
        alert.silenced = silenced
        try:
            channels = list(dict.fromkeys(self.route(event, rule, tuple(alert.notified_channels))))
        except Exception:
            log.exception("alert_routing_failed", alert=alert.id, kind=str(kind))
            channels = []
        # A resolved notice for an alert nobody was told about says nothing to anyone.
        suppressed = silenced or (kind is AlertEventKind.RESOLVED and not alert.notified_channels)
        status = DeliveryStatus.SUPPRESSED if suppressed else DeliveryStatus.PENDING
        for channel in channels:
            changes.deliveries.append(
                NewDelivery(
                    event_id=event.id,
                    alert_id=alert.id,
                    channel=channel,
                    status=status,
                    created_at=at,
                    payload=notification_payload(event, channel),
                )
            )
        if kind is not AlertEventKind.RESOLVED:
            alert.last_notified_at = at
            if not suppressed:
                alert.notified_channels = list(dict.fromkeys([*alert.notified_channels, *channels]))
        alert.updated_at = at
        self._dirty.pop(alert.id, None)
        changes.events.append(event)
        changes.alerts.append(snapshot(alert))

    def _is_muted(self, fingerprint: str, at: datetime) -> bool:
        muting = self._muted.get(fingerprint)
        return muting is not None and muting.muted_until is not None and at < muting.muted_until

    def _cleared(self, fingerprint: str, at: datetime, changes: AlertChanges) -> None:
        """The condition was seen clear: lift a mute left by a manual resolve."""
        muting = self._muted.pop(fingerprint, None)
        if muting is not None:
            muting.muted_until = None
            muting.updated_at = at
            changes.alerts.append(snapshot(muting))

    def _expire_mutes(self, at: datetime, changes: AlertChanges) -> None:
        for fingerprint, muting in list(self._muted.items()):
            if muting.muted_until is None or at >= muting.muted_until:
                self._cleared(fingerprint, at, changes)

    def _forget_ended_silences(self, at: datetime) -> None:
        """Ended silences match nothing any more (the store keeps them as history)."""
        for silence_id, silence in list(self._silences.items()):
            if silence.ends_at <= at:
                del self._silences[silence_id]

    def _retire_orphans(self, at: datetime, changes: AlertChanges) -> None:
        """Resolve instances of rules that were removed or disabled."""
        for rule_id in list(self._instances):
            if rule_id in (MANUAL_RULE_ID, SECURITY_RULE_ID):
                continue
            rule = self._rules.get(rule_id)
            if rule is not None and rule.enabled:
                continue
            reason = "rule removed" if rule is None else "rule disabled"
            for alert in list(self._instances.get(rule_id, {}).values()):
                if alert.state is AlertState.PENDING:
                    self._drop_pending(alert, changes)
                else:
                    self._resolve(alert, rule, at, f"engine: {reason}", changes)

    def _sync_dirty(self, changes: AlertChanges, *, force: bool = False) -> None:
        now = self.clock.monotonic()
        if not self._dirty or (not force and now - self._last_sync < STATE_SYNC_SECONDS):
            return
        self._last_sync = now
        for alert in self._dirty.values():
            changes.alerts.append(snapshot(alert))
        self._dirty.clear()

    # -- writing -------------------------------------------------------------------------

    async def _commit(self, changes: AlertChanges) -> None:
        """Write queued changes and ``changes`` in one transaction, then publish the events.

        When the store fails, everything stays queued (bounded) and
        :class:`AlertStoreUnavailable` is raised; the next attempt waits a growing
        pause (up to :data:`MAX_RETRY_DELAY`), so a store that is down is not asked
        on every tick.
        """
        if changes:
            self._queue.extend(changes)
            self._bound_queue()
        async with self._lock:
            if not self._queue or self.clock.monotonic() < self._retry_at:
                return
            batch, self._queue = self._queue, AlertChanges()
            try:
                await self.store.apply(batch)
            except Exception as exc:
                self.store_errors += 1
                batch.extend(self._queue)
                self._queue = batch
                self._bound_queue()
                self._retry_delay = min(max(self._retry_delay * 2, 0.5), MAX_RETRY_DELAY)
                self._retry_at = self.clock.monotonic() + self._retry_delay
                raise AlertStoreUnavailable(exc) from exc
            self._retry_delay = 0.0
            self._retry_at = -math.inf
            if self.bus is not None:
                for event in batch.events:
                    self.bus.publish(ALERT_EVENT_TOPIC, event)

    def _bound_queue(self) -> None:
        queue = self._queue
        if len(queue.events) <= MAX_QUEUED_EVENTS:
            return
        dropped = queue.events[: len(queue.events) - MAX_QUEUED_EVENTS]
        ids = {event.id for event in dropped}
        queue.events = queue.events[len(dropped) :]
        queue.deliveries = [d for d in queue.deliveries if d.event_id not in ids]
        self.dropped_events += len(dropped)
        # keep one (the latest) snapshot per alert
        latest = {alert.id: alert for alert in queue.alerts}
        queue.alerts = list(latest.values())

    # -- security events -----------------------------------------------------------------

    async def _consume(self, subscription: Subscription) -> None:
        await self._restored_event.wait()
        while True:
            batch = [await subscription.get()]
            while not subscription.queue.empty() and len(batch) < SECURITY_QUEUE_SIZE:
                batch.append(subscription.queue.get_nowait())
            try:
                await self.handle_security(batch)
            except asyncio.CancelledError:
                raise
            except AlertStoreUnavailable:
                self.loop_errors += 1  # the changes are queued; the tick loop says it once
            except Exception:
                self.loop_errors += 1
                log.exception("security_alerts_failed", events=len(batch))

    async def handle_security(self, messages: Sequence[BusMessage]) -> list[AlertEvent]:
        """Fold bus messages of the security topics into alerts, and commit at once.

        A burst that arrives together is counted before anything fires, so its
        fired notice already carries the number of events.
        """
        at = self.clock.now()
        changes = AlertChanges()
        grouped: dict[str, tuple[SecurityGroup, SecurityEventItem, int]] = {}
        for message in messages:
            group = security_group(message.topic, message.payload)
            if group is None:
                continue
            assert isinstance(message.payload, SecurityEventItem)
            self.security_events += 1
            seen = grouped.get(group.fingerprint)
            grouped[group.fingerprint] = (
                group,
                message.payload,
                1 if seen is None else seen[2] + 1,
            )
        for group, item, count in grouped.values():
            self._security_event(group, details_of(item), item, count, at, changes)
        await self._commit(changes)
        return list(changes.events)

    def _security_event(
        self,
        group: SecurityGroup,
        details: str,
        item: SecurityEventItem,
        count: int,
        at: datetime,
        changes: AlertChanges,
    ) -> None:
        """``count`` events of ``group`` (``item`` the latest) at ``at``."""
        alert = self._instances.get(SECURITY_RULE_ID, {}).get(group.fingerprint)
        if alert is not None:
            alert.count += count
            alert.last_active_at = at
            alert.description = group.description(alert.count, details)
            if details:
                alert.properties["details"] = details
            repeat = self.settings.security_repeat_interval
            last = alert.last_notified_at or alert.starts_at or alert.created_at
            if repeat is not None and (at - last).total_seconds() >= repeat:
                self._emit(alert, AlertEventKind.REPEATED, None, at, changes)
            else:
                self._touch(alert)
            return
        muting = self._muted.get(group.fingerprint)
        if muting is not None and self._is_muted(group.fingerprint, at):
            muting.last_active_at = at  # the source is not quiet: the mute goes on
            return
        if not self._has_room():
            return
        properties: dict[str, Any] = {"event_type": group.event_type, "source": group.source}
        if details:
            properties["details"] = details
        if item.user_id is not None:
            properties["user_id"] = item.user_id
        alert = Alert(
            rule_id=SECURITY_RULE_ID,
            fingerprint=group.fingerprint,
            title=group.title(),
            description=group.description(count, details),
            severity=group.severity,
            category=AlertCategory.SECURITY,
            state=AlertState.FIRING,
            created_at=at,
            last_active_at=at,
            labels=group.labels,
            properties=properties,
            affected_components=["security"],
            count=count,
            updated_at=at,
        )
        self._add(alert)
        self._fire(alert, None, at, changes)

    def _expire_security(self, at: datetime, changes: AlertChanges) -> None:
        """Resolve security alerts whose source has been quiet for the group window."""
        window = timedelta(seconds=self.settings.security_group_window)
        for alert in list(self._instances.get(SECURITY_RULE_ID, {}).values()):
            if at - (alert.last_active_at or alert.created_at) >= window:
                self._resolve(alert, None, at, None, changes)
        for fingerprint, muting in list(self._muted.items()):
            if (
                muting.rule_id == SECURITY_RULE_ID
                and at - (muting.last_active_at or muting.created_at) >= window
            ):
                self._cleared(fingerprint, at, changes)

    # -- by hand ---------------------------------------------------------------------------

    async def raise_alert(
        self,
        title: str,
        description: str,
        severity: Severity,
        category: AlertCategory,
        properties: Mapping[str, Any] | None = None,
        components: Sequence[str] = (),
        *,
        labels: Mapping[str, str] | None = None,
    ) -> Alert:
        """Fire an alert now (the plan's SendAlertAsync); it stays firing until resolved."""
        if self._forwarding:
            return await self._forwarded(
                CommandKind.RAISE,
                {
                    "title": title,
                    "description": description,
                    "severity": str(severity),
                    "category": str(category),
                    "properties": {str(k): str(v) for k, v in (properties or {}).items()},
                    "components": list(components),
                    "labels": dict(labels or {}),
                },
            )
        if not self._restored:
            await self.restore()
        at = self.clock.now()
        alert_id = new_id()
        props = dict(list((properties or {}).items())[:MAX_PROPERTY_KEYS])
        alert = Alert(
            id=alert_id,
            rule_id=MANUAL_RULE_ID,
            fingerprint=fingerprint_of(MANUAL_RULE_ID, {"id": alert_id}),
            title=title,
            description=description,
            severity=Severity(severity),
            category=AlertCategory(category),
            state=AlertState.FIRING,
            created_at=at,
            last_active_at=at,
            labels={
                **(labels or {}),
                "alertname": MANUAL_RULE_ID,
                "severity": str(severity),
                "category": str(category),
            },
            properties=props,
            affected_components=list(components),
            updated_at=at,
        )
        changes = AlertChanges()
        self._add(alert)
        self._fire(alert, None, at, changes)
        await self._commit(changes)
        return snapshot(alert)

    async def resolve(self, alert_id: str, resolved_by: str) -> Alert:
        """Resolve an alert by hand (see the module's notes on what happens next).

        Resolving an alert that is already resolved changes nothing and returns it.
        Raises :class:`AlertNotFound` for an unknown id.
        """
        if self._forwarding:
            return await self._forwarded(
                CommandKind.RESOLVE, {"alert_id": alert_id, "resolved_by": resolved_by}
            )
        if not self._restored:
            await self.restore()
        alert = self._by_id.get(alert_id)
        if alert is None:
            detail = await self.store.get(alert_id)
            if detail is None:
                raise AlertNotFound(alert_id)
            return detail.alert
        at = self.clock.now()
        changes = AlertChanges()
        rule = self._rules.get(alert.rule_id)
        if alert.rule_id != MANUAL_RULE_ID and self.settings.resolve_mute > 0:
            alert.muted_until = at + timedelta(seconds=self.settings.resolve_mute)
            self._muted[alert.fingerprint] = alert
        self._resolve(alert, rule, at, resolved_by, changes)
        await self._commit(changes)
        return snapshot(alert)

    # -- several instances -----------------------------------------------------------------

    @property
    def _forwarding(self) -> bool:
        return self.forward is not None and not self.running

    async def _forwarded(self, kind: CommandKind, body: dict[str, Any]) -> Alert:
        """Have the leader apply a change, and read the alert it changed from the store."""
        assert self.forward is not None
        outcome = await self.forward.submit(kind, body)
        alert_id = str(outcome.get("alert_id", body.get("alert_id", "")))
        if outcome.get("error") == "alert_not_found":
            raise AlertNotFound(alert_id)
        detail = await self.store.get(alert_id)
        if detail is None:
            raise AlertNotFound(alert_id)
        if self._mirrored is not None:  # shown here at once, not after the next refresh
            others = [alert for alert in self._mirrored if alert.id != alert_id]
            active = detail.alert.state is not AlertState.RESOLVED
            self._mirrored = [*others, detail.alert] if active else others
        return detail.alert

    async def config_changed(self) -> None:
        """Rules or silences were saved to the store here: the leader reads them again
        (if none answers in time, the next leader reads them when it is elected)."""
        if not self._forwarding:
            return
        assert self.forward is not None
        try:
            await self.forward.submit(CommandKind.RELOAD, {})
        except LeaderUnavailable:
            log.warning("alert_config_change_not_confirmed", timeout=self.forward.timeout)

    def mirror(self, alerts: Iterable[Alert], silences: Iterable[Silence]) -> None:
        """While another instance leads: show the store's active alerts and silences
        (the follower's refresh loop calls it; :meth:`start` ends it)."""
        now = self.clock.now()
        self._mirrored = [alert for alert in alerts if alert.state is not AlertState.RESOLVED]
        self._silences = {s.id: s for s in silences if s.ends_at > now}

    async def reload_silences(self) -> None:
        """Read the silences again (another instance changed them)."""
        try:
            silences = await self.store.list_silences(active_at=None)
        except Exception as exc:
            raise AlertStoreUnavailable(exc) from exc
        now = self.clock.now()
        self._silences = {s.id: s for s in silences if s.ends_at > now}

    # -- reading -----------------------------------------------------------------------------

    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (copies), ``silenced`` computed now; oldest first."""
        at = self.clock.now()
        silences = self._active_silences(at)
        found = []
        held = self._by_id.values() if self._mirrored is None else self._mirrored
        for alert in held:
            copy = snapshot(alert)
            copy.silenced = silenced_by(silences, alert.labels, at) is not None
            found.append(copy)
        return sorted(found, key=lambda alert: (alert.created_at, alert.id))

    def is_silenced(self, alert: Alert) -> bool:
        at = self.clock.now()
        return silenced_by(self._active_silences(at), alert.labels, at) is not None

    def _active_silences(self, at: datetime) -> list[Silence]:
        found = list(self._silences.values())
        if self.silence_source is not None:
            try:
                found.extend(self.silence_source(at))
            except Exception:
                if self.strict:
                    raise
                log.exception("silence_source_failed")
        return found

    # -- silences ------------------------------------------------------------------------------

    @property
    def silences(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    async def add_silence(self, silence: Silence) -> Silence:
        """Store a silence (new or changed) and apply it from the next event on.

        Raises :class:`AlertError` past :data:`MAX_SILENCES` current silences.
        """
        if silence.id not in self._silences and len(self._silences) >= MAX_SILENCES:
            raise AlertError(f"more than {MAX_SILENCES} silences; remove some first")
        if silence.created_at is None:
            silence = silence.model_copy(update={"created_at": self.clock.now()})
        await self.store.save_silence(silence)
        self._silences[silence.id] = silence
        await self.config_changed()
        return silence

    async def remove_silence(self, silence_id: str) -> None:
        """Delete a silence; raises :class:`SilenceNotFound`."""
        if not await self.store.delete_silence(silence_id) and silence_id not in self._silences:
            raise SilenceNotFound(silence_id)
        self._silences.pop(silence_id, None)
        await self.config_changed()


def notification_payload(event: AlertEvent, channel: str) -> dict[str, Any]:
    """What an outbox row keeps to send: the fields of a notifier ``Notification``."""
    return {
        "key": idempotency_key(event.id, channel),
        "channel": channel,
        "event_id": event.id,
        "kind": str(event.kind),
        "at": event.at.isoformat(),
        "alert_id": event.alert_id,
        "fingerprint": event.fingerprint,
        "rule_id": event.rule_id,
        "title": event.title,
        "description": event.description,
        "severity": str(event.severity),
        "category": str(event.category),
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.at.isoformat() if event.kind is AlertEventKind.RESOLVED else None,
        "value": _finite(event.value),
        "threshold": _finite(event.threshold),
        "labels": dict(event.labels),
        "properties": {str(k): _text(v) for k, v in event.properties.items()},
        "affected_components": list(event.affected_components),
        "resolved_by": event.resolved_by,
        "count": event.count,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)
