"""The durable :class:`~.store.AlertStore`: tables of the telemetry store (SQLite or PostgreSQL).

It shares the telemetry store's :class:`~sqlalchemy.ext.asyncio.AsyncEngine`
and its migrations (``0002``). Change sets are written in one transaction with
idempotent inserts (events by id, deliveries by idempotency key), so a commit
retried after a lost acknowledgement adds nothing. The outbox claim is one
``UPDATE ... RETURNING`` (with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
two dispatchers never claim the same row.

With several instances, the leader's store has a ``fence``
(:class:`~digitalme.monitoring.cluster.lease.Lease.fence`): change sets,
claims, retries and dead-lettering are refused (:class:`~digitalme.monitoring.
cluster.lease.LeaseLost`) once another instance leads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from digitalme.monitoring.alerts.model import (
    Alert,
    AlertCategory,
    AlertEvent,
    AlertEventKind,
    AlertState,
    Severity,
)
from digitalme.monitoring.alerts.silences import Silence
from digitalme.monitoring.alerts.store import (
    AlertChanges,
    AlertDetail,
    AlertQuery,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    StoredRule,
)
from digitalme.monitoring.storage import schema

__all__ = ["Fence", "SqlAlertStore"]

Row = RowMapping
Fence = Callable[[AsyncConnection], Awaitable[None]]
"""Runs first in each leader-only transaction; raises to refuse it (see
:meth:`digitalme.monitoring.cluster.lease.Lease.fence`)."""


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class SqlAlertStore:
    """Alert state, history, silences, rules and the outbox in the telemetry store's database."""

    def __init__(self, engine: AsyncEngine, *, fence: Fence | None = None) -> None:
        self.engine = engine
        self.fence = fence
        self.backend = engine.dialect.name
        self._insert: Any = postgresql.insert if self.backend == "postgresql" else sqlite.insert

    def __repr__(self) -> str:
        return f"SqlAlertStore(backend={self.backend!r})"

    # -- alerts ------------------------------------------------------------------

    async def load_active(self) -> list[Alert]:
        table = schema.alerts
        statement = select(table).where(
            or_(
                table.c.state.in_([str(AlertState.PENDING), str(AlertState.FIRING)]),
                table.c.muted_until.is_not(None),
            )
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [_alert(row._mapping) for row in result]

    async def apply(self, changes: AlertChanges) -> None:
        removed = set(changes.removed)
        latest = {alert.id: alert for alert in changes.alerts if alert.id not in removed}
        async with self.engine.begin() as connection:
            await self._fenced(connection)
            if latest:
                await self._upsert_alerts(connection, list(latest.values()))
            if removed:
                table = schema.alerts
                await connection.execute(
                    delete(table).where(
                        table.c.id.in_(sorted(removed)), table.c.state == str(AlertState.PENDING)
                    )
                )
            if changes.events:
                table = schema.alert_events
                statement = self._insert(table).on_conflict_do_nothing(index_elements=[table.c.id])
                await connection.execute(statement, [_event_row(e) for e in changes.events])
            if changes.deliveries:
                table = schema.deliveries
                statement = self._insert(table).on_conflict_do_nothing(
                    index_elements=[table.c.idempotency_key]
                )
                rows = [
                    {
                        "event_id": new.event_id,
                        "alert_id": new.alert_id,
                        "channel": new.channel,
                        "idempotency_key": new.idempotency_key,
                        "status": str(new.status),
                        "attempts": 0,
                        "next_attempt_at": new.created_at.timestamp(),
                        "last_error": None,
                        "created_at": new.created_at.timestamp(),
                        "sent_at": None,
                        "payload": dict(new.payload),
                    }
                    for new in changes.deliveries
                ]
                await connection.execute(statement, rows)

    async def _upsert_alerts(self, connection: AsyncConnection, alerts: Sequence[Alert]) -> None:
        table = schema.alerts
        statement = self._insert(table)
        columns = [column.name for column in table.c if column.name != "id"]
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={name: statement.excluded[name] for name in columns},
        )
        # sorted by id: concurrent writers lock rows in the same order
        rows = sorted((_alert_row(alert) for alert in alerts), key=lambda row: row["id"])
        await connection.execute(statement, rows)

    async def history(self, query: AlertQuery) -> list[Alert]:
        table = schema.alerts
        conditions = []
        if query.rule_id is not None:
            conditions.append(table.c.rule_id == query.rule_id)
        if query.state is not None:
            conditions.append(table.c.state == str(query.state))
        if query.severity is not None:
            conditions.append(table.c.severity == str(query.severity))
        if query.category is not None:
            conditions.append(table.c.category == str(query.category))
        if query.fingerprint is not None:
            conditions.append(table.c.fingerprint == query.fingerprint)
        if query.since is not None:
            conditions.append(table.c.created_at >= query.since.timestamp())
        if query.until is not None:
            conditions.append(table.c.created_at < query.until.timestamp())
        statement = (
            select(table)
            .where(and_(True, *conditions))
            .order_by(table.c.created_at.desc(), table.c.id.desc())
            .limit(query.limit)
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [_alert(row._mapping) for row in result]

    async def get(self, alert_id: str) -> AlertDetail | None:
        alerts, events = schema.alerts, schema.alert_events
        deliveries, attempts = schema.deliveries, schema.delivery_attempts
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(alerts).where(alerts.c.id == alert_id))).first()
            if row is None:
                return None
            event_rows = await connection.execute(
                select(events).where(events.c.alert_id == alert_id).order_by(events.c.at)
            )
            delivery_rows = await connection.execute(
                select(deliveries)
                .where(deliveries.c.alert_id == alert_id)
                .order_by(deliveries.c.id)
            )
            found = [_delivery(r._mapping) for r in delivery_rows]
            attempt_rows = await connection.execute(
                select(attempts)
                .where(attempts.c.delivery_id.in_([d.id for d in found]))
                .order_by(attempts.c.at, attempts.c.id)
            )
            return AlertDetail(
                _alert(row._mapping),
                [_event(r._mapping) for r in event_rows],
                found,
                [_attempt(r._mapping) for r in attempt_rows],
            )

    # -- silences and rules --------------------------------------------------------

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        table = schema.silences
        statement = select(table).order_by(table.c.starts_at, table.c.id)
        if active_at is not None:
            moment = active_at.timestamp()
            statement = statement.where(table.c.starts_at <= moment, table.c.ends_at > moment)
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [_silence(row._mapping) for row in result]

    async def save_silence(self, silence: Silence) -> None:
        table = schema.silences
        row = {
            "id": silence.id,
            "matchers": dict(silence.matchers),
            "starts_at": silence.starts_at.timestamp(),
            "ends_at": silence.ends_at.timestamp(),
            "created_by": silence.created_by,
            "comment": silence.comment,
            "created_at": _ts(silence.created_at),
        }
        await self._upsert(table, row)

    async def delete_silence(self, silence_id: str) -> bool:
        table = schema.silences
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(table).where(table.c.id == silence_id))
            return bool(result.rowcount)

    async def list_rules(self) -> list[StoredRule]:
        table = schema.alert_rules
        async with self.engine.connect() as connection:
            result = await connection.execute(select(table).order_by(table.c.id))
            return [
                StoredRule(
                    id=row.id,
                    definition=row.definition,
                    enabled=row.enabled,
                    updated_at=_at(row.updated_at),
                    updated_by=row.updated_by,
                )
                for row in result
            ]

    async def save_rule(self, rule: StoredRule) -> None:
        row = {
            "id": rule.id,
            "definition": dict(rule.definition),
            "enabled": rule.enabled,
            "updated_at": rule.updated_at.timestamp(),
            "updated_by": rule.updated_by,
        }
        await self._upsert(schema.alert_rules, row)

    async def delete_rule(self, rule_id: str) -> bool:
        table = schema.alert_rules
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(table).where(table.c.id == rule_id))
            return bool(result.rowcount)

    async def _upsert(self, table: Any, row: dict[str, Any]) -> None:
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={name: statement.excluded[name] for name in row if name != "id"},
        )
        async with self.engine.begin() as connection:
            await connection.execute(statement, [row])

    # -- the outbox ----------------------------------------------------------------

    async def claim_due_deliveries(
        self, now: datetime, limit: int, *, lease: float = 60.0
    ) -> list[Delivery]:
        table = schema.deliveries
        moment = now.timestamp()
        due = (
            select(table.c.id)
            .where(
                table.c.status.in_([str(DeliveryStatus.PENDING), str(DeliveryStatus.SENDING)]),
                table.c.next_attempt_at <= moment,
            )
            .order_by(table.c.id)
            .limit(limit)
        )
        if self.backend == "postgresql":
            due = due.with_for_update(skip_locked=True)
        statement = (
            update(table)
            .where(table.c.id.in_(due.scalar_subquery()))
            .values(status=str(DeliveryStatus.SENDING), next_attempt_at=moment + lease)
            .returning(*table.c)
        )
        async with self.engine.begin() as connection:
            await self._fenced(connection)
            result = await connection.execute(statement)
            claimed = [_delivery(row._mapping) for row in result]
        return sorted(claimed, key=lambda delivery: delivery.id)

    async def record_attempt(self, attempt: DeliveryAttempt) -> None:
        deliveries, attempts = schema.deliveries, schema.delivery_attempts
        async with self.engine.begin() as connection:
            await connection.execute(
                attempts.insert().values(
                    delivery_id=attempt.delivery_id,
                    at=attempt.at.timestamp(),
                    outcome=attempt.outcome,
                    latency_ms=attempt.latency_ms,
                    detail=attempt.detail,
                )
            )
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == attempt.delivery_id)
                .values(attempts=deliveries.c.attempts + 1)
            )

    # A send that happened is recorded whoever leads now (it is a fact: unfenced);
    # retrying or giving up is a decision, for the leader only (fenced).

    async def mark_sent(self, delivery_id: int, at: datetime) -> None:
        await self._set(
            delivery_id, fenced=False, status=str(DeliveryStatus.SENT), sent_at=at.timestamp()
        )

    async def mark_retry(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
        await self._set(
            delivery_id,
            fenced=True,
            status=str(DeliveryStatus.PENDING),
            next_attempt_at=next_attempt_at.timestamp(),
            last_error=error,
        )

    async def mark_dead(self, delivery_id: int, reason: str, at: datetime) -> None:
        await self._set(
            delivery_id, fenced=True, status=str(DeliveryStatus.DEAD), last_error=reason
        )

    async def _fenced(self, connection: AsyncConnection) -> None:
        if self.fence is not None:
            await self.fence(connection)

    async def _set(self, delivery_id: int, *, fenced: bool, **values: Any) -> None:
        table = schema.deliveries
        async with self.engine.begin() as connection:
            if fenced:
                await self._fenced(connection)
            await connection.execute(
                update(table).where(table.c.id == delivery_id).values(**values)
            )

    async def deliveries(self, *, alert_id: str | None = None) -> list[Delivery]:
        table = schema.deliveries
        statement = select(table).order_by(table.c.id)
        if alert_id is not None:
            statement = statement.where(table.c.alert_id == alert_id)
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [_delivery(row._mapping) for row in result]


# -- rows <-> records ------------------------------------------------------------


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "fingerprint": alert.fingerprint,
        "rule_id": alert.rule_id,
        "state": str(alert.state),
        "severity": str(alert.severity),
        "category": str(alert.category),
        "title": alert.title,
        "description": alert.description,
        "created_at": alert.created_at.timestamp(),
        "starts_at": _ts(alert.starts_at),
        "pending_since": _ts(alert.pending_since),
        "last_active_at": _ts(alert.last_active_at),
        "resolved_at": _ts(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "value": alert.value,
        "threshold": alert.threshold,
        "labels": dict(alert.labels),
        "properties": dict(alert.properties),
        "affected_components": list(alert.affected_components),
        "last_notified_at": _ts(alert.last_notified_at),
        "count": alert.count,
        "notified_channels": list(alert.notified_channels),
        "muted_until": _ts(alert.muted_until),
        "updated_at": (alert.updated_at or alert.created_at).timestamp(),
    }


def _alert(row: Row) -> Alert:
    return Alert(
        id=row["id"],
        rule_id=row["rule_id"],
        fingerprint=row["fingerprint"],
        title=row["title"],
        description=row["description"],
        severity=Severity(row["severity"]),
        category=AlertCategory(row["category"]),
        state=AlertState(row["state"]),
        created_at=_at(row["created_at"]),
        starts_at=_dt(row["starts_at"]),
        pending_since=_dt(row["pending_since"]),
        last_active_at=_dt(row["last_active_at"]),
        resolved_at=_dt(row["resolved_at"]),
        resolved_by=row["resolved_by"],
        value=row["value"],
        threshold=row["threshold"],
        labels=dict(row["labels"]),
        properties=dict(row["properties"]),
        affected_components=list(row["affected_components"]),
        last_notified_at=_dt(row["last_notified_at"]),
        count=int(row["count"]),
        notified_channels=list(row["notified_channels"]),
        muted_until=_dt(row["muted_until"]),
        updated_at=_dt(row["updated_at"]),
    )


def _event_row(event: AlertEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "alert_id": event.alert_id,
        "rule_id": event.rule_id,
        "fingerprint": event.fingerprint,
        "kind": str(event.kind),
        "at": event.at.timestamp(),
        "severity": str(event.severity),
        "category": str(event.category),
        "title": event.title,
        "description": event.description,
        "starts_at": event.starts_at.timestamp(),
        "value": event.value,
        "threshold": event.threshold,
        "labels": dict(event.labels),
        "properties": dict(event.properties),
        "affected_components": list(event.affected_components),
        "resolved_by": event.resolved_by,
        "count": event.count,
    }


def _event(row: Row) -> AlertEvent:
    return AlertEvent(
        id=row["id"],
        alert_id=row["alert_id"],
        rule_id=row["rule_id"],
        fingerprint=row["fingerprint"],
        kind=AlertEventKind(row["kind"]),
        at=_at(row["at"]),
        severity=Severity(row["severity"]),
        category=AlertCategory(row["category"]),
        title=row["title"],
        description=row["description"],
        starts_at=_at(row["starts_at"]),
        value=row["value"],
        threshold=row["threshold"],
        labels=row["labels"],
        properties=row["properties"],
        affected_components=tuple(row["affected_components"]),
        resolved_by=row["resolved_by"],
        count=int(row["count"]),
    )


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=int(row["id"]),
        event_id=row["event_id"],
        alert_id=row["alert_id"],
        channel=row["channel"],
        idempotency_key=row["idempotency_key"],
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        next_attempt_at=_at(row["next_attempt_at"]),
        created_at=_at(row["created_at"]),
        payload=row["payload"],
        last_error=row["last_error"],
        sent_at=_dt(row["sent_at"]),
    )


def _attempt(row: Row) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=int(row["delivery_id"]),
        at=_at(row["at"]),
        outcome=row["outcome"],
        latency_ms=row["latency_ms"],
        detail=row["detail"],
    )


def _silence(row: Row) -> Silence:
    return Silence(
        id=row["id"],
        matchers=dict(row["matchers"]),
        starts_at=_at(row["starts_at"]),
        ends_at=_at(row["ends_at"]),
        created_by=row["created_by"],
        comment=row["comment"],
        created_at=_dt(row["created_at"]),
    )
