"""An in-memory :class:`~.store.AlertStore` for tests and for running without a telemetry store.

Same semantics as the SQL store (one change set applied at once, idempotent
inserts, claims that expire), nothing survives the process. ``failing`` makes
every write raise, to test what the engine does when its store is down.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta

from digitalme.monitoring.alerts.model import Alert, AlertEvent, AlertState
from digitalme.monitoring.alerts.silences import Silence
from digitalme.monitoring.alerts.store import (
    AlertChanges,
    AlertDetail,
    AlertQuery,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    StoredRule,
    snapshot,
)

__all__ = ["InMemoryAlertStore"]


class InMemoryAlertStore:
    """Alerts, events, silences, rules and the outbox in dictionaries."""

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}
        self.events: dict[str, AlertEvent] = {}
        self.outbox: dict[int, Delivery] = {}
        self.attempts: list[DeliveryAttempt] = []
        self.silences: dict[str, Silence] = {}
        self.rules: dict[str, StoredRule] = {}
        self.transactions = 0
        self.failing = False
        self._keys: dict[str, int] = {}
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if self.failing:
            raise ConnectionError("in-memory alert store told to fail")

    async def load_active(self) -> list[Alert]:
        self._check()
        return [
            snapshot(alert)
            for alert in self.alerts.values()
            if alert.state is not AlertState.RESOLVED or alert.muted_until is not None
        ]

    async def apply(self, changes: AlertChanges) -> None:
        self._check()
        for alert in changes.alerts:
            self.alerts[alert.id] = snapshot(alert)
        for alert_id in changes.removed:
            self.alerts.pop(alert_id, None)
        for event in changes.events:
            self.events.setdefault(event.id, event)
        for new in changes.deliveries:
            if new.idempotency_key in self._keys:
                continue
            delivery_id = next(self._ids)
            self._keys[new.idempotency_key] = delivery_id
            self.outbox[delivery_id] = Delivery(
                id=delivery_id,
                event_id=new.event_id,
                alert_id=new.alert_id,
                channel=new.channel,
                idempotency_key=new.idempotency_key,
                status=new.status,
                attempts=0,
                next_attempt_at=new.created_at,
                created_at=new.created_at,
                payload=dict(new.payload),
            )
        self.transactions += 1

    async def history(self, query: AlertQuery) -> list[Alert]:
        found = [
            alert
            for alert in self.alerts.values()
            if (query.rule_id is None or alert.rule_id == query.rule_id)
            and (query.state is None or alert.state is query.state)
            and (query.severity is None or alert.severity is query.severity)
            and (query.category is None or alert.category is query.category)
            and (query.fingerprint is None or alert.fingerprint == query.fingerprint)
            and (query.since is None or alert.created_at >= query.since)
            and (query.until is None or alert.created_at < query.until)
        ]
        found.sort(key=lambda alert: (alert.created_at, alert.id), reverse=True)
        return [snapshot(alert) for alert in found[: query.limit]]

    async def get(self, alert_id: str) -> AlertDetail | None:
        alert = self.alerts.get(alert_id)
        if alert is None:
            return None
        events = sorted(
            (e for e in self.events.values() if e.alert_id == alert_id), key=lambda e: e.at
        )
        deliveries = await self.deliveries(alert_id=alert_id)
        ids = {delivery.id for delivery in deliveries}
        attempts = [attempt for attempt in self.attempts if attempt.delivery_id in ids]
        return AlertDetail(snapshot(alert), events, deliveries, attempts)

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        silences = sorted(self.silences.values(), key=lambda s: (s.starts_at, s.id))
        if active_at is None:
            return silences
        return [silence for silence in silences if silence.active(active_at)]

    async def save_silence(self, silence: Silence) -> None:
        self._check()
        self.silences[silence.id] = silence

    async def delete_silence(self, silence_id: str) -> bool:
        self._check()
        return self.silences.pop(silence_id, None) is not None

    async def list_rules(self) -> list[StoredRule]:
        return sorted(self.rules.values(), key=lambda rule: rule.id)

    async def save_rule(self, rule: StoredRule) -> None:
        self._check()
        self.rules[rule.id] = rule

    async def delete_rule(self, rule_id: str) -> bool:
        self._check()
        return self.rules.pop(rule_id, None) is not None

    async def claim_due_deliveries(
        self, now: datetime, limit: int, *, lease: float = 60.0
    ) -> list[Delivery]:
        self._check()
        due = [
            delivery
            for delivery in sorted(self.outbox.values(), key=lambda d: d.id)
            if delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
            and delivery.next_attempt_at <= now
        ][:limit]
        claimed = []
        for delivery in due:
            updated = replace(
                delivery,
                status=DeliveryStatus.SENDING,
                next_attempt_at=now + timedelta(seconds=lease),
            )
            self.outbox[delivery.id] = updated
            claimed.append(updated)
        return claimed

    async def record_attempt(self, attempt: DeliveryAttempt) -> None:
        self._check()
        self.attempts.append(attempt)
        delivery = self.outbox.get(attempt.delivery_id)
        if delivery is not None:
            self.outbox[delivery.id] = replace(delivery, attempts=delivery.attempts + 1)

    async def mark_sent(self, delivery_id: int, at: datetime) -> None:
        self._update(delivery_id, status=DeliveryStatus.SENT, sent_at=at)

    async def mark_retry(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
        self._update(
            delivery_id,
            status=DeliveryStatus.PENDING,
            next_attempt_at=next_attempt_at,
            last_error=error,
        )

    async def mark_dead(self, delivery_id: int, reason: str, at: datetime) -> None:
        self._update(delivery_id, status=DeliveryStatus.DEAD, last_error=reason)

    def _update(self, delivery_id: int, **values: object) -> None:
        self._check()
        delivery = self.outbox.get(delivery_id)
        if delivery is not None:
            self.outbox[delivery_id] = replace(delivery, **values)  # type: ignore[arg-type]

    async def deliveries(self, *, alert_id: str | None = None) -> list[Delivery]:
        return [
            delivery
            for delivery in sorted(self.outbox.values(), key=lambda d: d.id)
            if alert_id is None or delivery.alert_id == alert_id
        ]
