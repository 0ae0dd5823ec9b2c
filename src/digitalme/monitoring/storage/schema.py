"""Tables of the telemetry store (SQLAlchemy Core, its own MetaData).

Every table name starts with ``telemetry_`` so the store can share a PostgreSQL
database with the host. Times are epoch seconds in double precision; every row
carries the ``instance`` that wrote it, for several instances on one database.

Metric buckets exist at four resolutions (:data:`RESOLUTIONS`): the pipeline
writes 10 s buckets, the retention job rolls completed ones up into 60 s, 300 s
and 3600 s buckets and records how far each roll-up has got in
``telemetry_rollups``, so that queries can stitch coarse and fine buckets.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from digitalme.monitoring.telemetry.items import ItemKind

RESOLUTIONS: tuple[int, ...] = (10, 60, 300, 3600)
"""Bucket resolutions in seconds, finest first; each divides the next."""

metadata = MetaData()

# A rowid alias on SQLite (cheapest), BIGSERIAL on PostgreSQL.
_Id = BigInteger().with_variant(Integer(), "sqlite")


def _item_table(name: str, *columns: Column[object], indexes: tuple[str, ...] = ()) -> Table:
    """An item table: shared columns, the kind's own columns, and time-window indexes."""
    table = Table(
        name,
        metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        Column("ts", Double, nullable=False),
        Column("instance", String, nullable=False, default=""),
        Column("operation_id", String(64), nullable=True),
        Column("weight", Double, nullable=False, default=1.0),
        *columns,
        Column("properties", JSON, nullable=False),
    )
    Index(f"ix_{name}_ts", table.c.ts)
    for column in indexes:
        Index(f"ix_{name}_{column}_ts", table.c[column], table.c.ts)
    return table


requests = _item_table(
    "telemetry_requests",
    Column("name", String, nullable=False),
    Column("duration_ms", Double, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("success", Boolean, nullable=False),
)

dependencies = _item_table(
    "telemetry_dependencies",
    Column("type", String, nullable=False),
    Column("target", String, nullable=False),
    Column("name", String, nullable=False),
    Column("data", Text, nullable=False),
    Column("duration_ms", Double, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("result_code", String, nullable=False),
)

exceptions = _item_table(
    "telemetry_exceptions",
    Column("type", String, nullable=False),
    Column("message", Text, nullable=False),
    Column("stack", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    indexes=("type",),
)

events = _item_table(
    "telemetry_events",
    Column("name", String, nullable=False),
    Column("measurements", JSON, nullable=False),
    indexes=("name",),
)

security_events = _item_table(
    "telemetry_security_events",
    Column("event_type", String, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("details", Text, nullable=False),
    Column("client_ip", String(64), nullable=True),
    Column("user_id", String, nullable=True),
    indexes=("event_type",),
)
# migration 0003: the security figures count per (address, type) from the index alone
Index(
    "ix_telemetry_security_events_ts_ip_type",
    security_events.c.ts,
    security_events.c.client_ip,
    security_events.c.event_type,
    security_events.c.weight,
)

ITEM_TABLES: dict[ItemKind, Table] = {
    ItemKind.REQUEST: requests,
    ItemKind.DEPENDENCY: dependencies,
    ItemKind.EXCEPTION: exceptions,
    ItemKind.EVENT: events,
    ItemKind.SECURITY_EVENT: security_events,
}

metric_series = Table(
    "telemetry_metric_series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # sha1 hex of the canonical JSON of (name, sorted dimensions): a short unique key
    Column("fingerprint", String(40), nullable=False, unique=True),
    Column("name", String, nullable=False, index=True),
    Column("dimensions", JSON, nullable=False),
)

metric_buckets = Table(
    "telemetry_metric_buckets",
    metadata,
    Column("series_id", Integer, ForeignKey(metric_series.c.id), primary_key=True),
    Column("resolution", Integer, primary_key=True),
    Column("start", Double, primary_key=True),
    Column("instance", String, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("sum", Double, nullable=False),
    Column("min", Double, nullable=False),
    Column("max", Double, nullable=False),
    Column("sketch", LargeBinary, nullable=False),
)
Index(
    "ix_telemetry_metric_buckets_resolution_start",
    metric_buckets.c.resolution,
    metric_buckets.c.start,
)

rollups = Table(
    "telemetry_rollups",
    metadata,
    Column("resolution", Integer, primary_key=True),
    # every bucket of this resolution starting before done_until has been rolled up
    Column("done_until", Double, nullable=False),
)

# migration 0006: roll-ups that let a long window read its whole hours at the hour level
# (written by the retention job, digitalme.monitoring.storage.retention). The busiest
# minute of each hour of a metric: the largest per-minute count, every series and
# instance of the name added up, from the 60 s buckets when they are rolled up.
minute_peaks = Table(
    "telemetry_minute_peaks",
    metadata,
    Column("name", String, primary_key=True),
    Column("hour", Double, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Security events per hour, address and type (their weights added up), for the
# hours before ``telemetry_item_rollups``' ``done_until`` of ``security_hours``.
security_hours = Table(
    "telemetry_security_hours",
    metadata,
    Column("hour", Double, nullable=False),
    Column("event_type", String, nullable=False),
    Column("client_ip", String(64), nullable=True),
    Column("weight", Double, nullable=False),
)
Index(
    "ix_telemetry_security_hours_hour_ip_type",
    security_hours.c.hour,
    security_hours.c.client_ip,
    security_hours.c.event_type,
    security_hours.c.weight,
)

SECURITY_HOURS = "security_hours"
"""The ``telemetry_item_rollups`` mark of ``telemetry_security_hours``."""

# How far each roll-up of items is done: every item before ``done_until`` is in it.
item_rollups = Table(
    "telemetry_item_rollups",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("done_until", Double, nullable=False),
)

# migration 0003: one HyperLogLog sketch of the active users per minute and instance
# (digitalme.monitoring.telemetry.users), upserted whole like the metric buckets
active_users = Table(
    "telemetry_active_users",
    metadata,
    Column("minute", Double, primary_key=True),
    Column("instance", String, primary_key=True),
    Column("sketch", LargeBinary, nullable=False),
)

# migration 0007: the active users of each whole period of ``users.PERIOD`` (5 minutes),
# every instance's minute sketches in one, rolled up by the retention job up to the
# ``active_user_periods`` mark of ``telemetry_item_rollups``
active_user_periods = Table(
    "telemetry_active_user_periods",
    metadata,
    Column("start", Double, primary_key=True),
    Column("sketch", LargeBinary, nullable=False),
)

ACTIVE_USER_PERIODS = "active_user_periods"
"""The ``telemetry_item_rollups`` mark of ``telemetry_active_user_periods``."""

# -- alerting (migration 0002) -------------------------------------------------
# Alert history is kept: the retention job only deletes items and metric buckets.
# Times are epoch seconds like the rest of the store; ids are UUID strings, but
# deliveries have integer ids so that the outbox is read in creation order.

alerts = Table(
    "telemetry_alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("starts_at", Double, nullable=True),
    Column("pending_since", Double, nullable=True),
    Column("last_active_at", Double, nullable=True),
    Column("resolved_at", Double, nullable=True),
    Column("resolved_by", String(200), nullable=True),
    Column("value", Double, nullable=True),
    Column("threshold", Double, nullable=True),
    Column("labels", JSON, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("affected_components", JSON, nullable=False),
    Column("last_notified_at", Double, nullable=True),
    Column("count", BigInteger, nullable=False),
    Column("notified_channels", JSON, nullable=False),
    Column("muted_until", Double, nullable=True),
    Column("updated_at", Double, nullable=False),
)
# load_active: the pending and firing ones (and muted resolved ones)
Index("ix_telemetry_alerts_state", alerts.c.state)
Index("ix_telemetry_alerts_muted_until", alerts.c.muted_until)
# history: newest first, optionally per rule or fingerprint
Index("ix_telemetry_alerts_created_at", alerts.c.created_at)
Index("ix_telemetry_alerts_rule_id_created_at", alerts.c.rule_id, alerts.c.created_at)
Index("ix_telemetry_alerts_fingerprint_created_at", alerts.c.fingerprint, alerts.c.created_at)

alert_events = Table(
    "telemetry_alert_events",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("alert_id", String(36), ForeignKey(alerts.c.id), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", Double, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("starts_at", Double, nullable=False),
    Column("value", Double, nullable=True),
    Column("threshold", Double, nullable=True),
    Column("labels", JSON, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("affected_components", JSON, nullable=False),
    Column("resolved_by", String(200), nullable=True),
    Column("count", BigInteger, nullable=False),
)
Index("ix_telemetry_alert_events_alert_id_at", alert_events.c.alert_id, alert_events.c.at)
Index("ix_telemetry_alert_events_at", alert_events.c.at)

silences = Table(
    "telemetry_silences",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("matchers", JSON, nullable=False),
    Column("starts_at", Double, nullable=False),
    Column("ends_at", Double, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Double, nullable=True),
)
Index("ix_telemetry_silences_ends_at", silences.c.ends_at)

alert_rules = Table(
    "telemetry_alert_rules",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("definition", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("updated_by", String(200), nullable=True),
)

deliveries = Table(
    "telemetry_deliveries",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("event_id", String(36), ForeignKey(alert_events.c.id), nullable=False),
    Column("alert_id", String(36), nullable=False),
    Column("channel", String(50), nullable=False),
    Column("idempotency_key", String(100), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("sent_at", Double, nullable=True),
    Column("payload", JSON, nullable=False),
)
# the dispatcher's claim: due rows by status and time
Index(
    "ix_telemetry_deliveries_status_next_attempt_at",
    deliveries.c.status,
    deliveries.c.next_attempt_at,
)
Index("ix_telemetry_deliveries_alert_id", deliveries.c.alert_id)
Index("ix_telemetry_deliveries_event_id", deliveries.c.event_id)

delivery_attempts = Table(
    "telemetry_delivery_attempts",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("delivery_id", _Id, ForeignKey(deliveries.c.id), nullable=False),
    Column("at", Double, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("latency_ms", Double, nullable=True),
    Column("detail", Text, nullable=False),
)
Index(
    "ix_telemetry_delivery_attempts_delivery_id_at",
    delivery_attempts.c.delivery_id,
    delivery_attempts.c.at,
)

# -- uptime (migration 0004) ---------------------------------------------------
# Heartbeats of every probed component (a health check, ``overall``, or a target of
# ``digitalme watch``) from each source (``inside``: the service's own prober,
# ``outside``: a watcher). Raw heartbeats are kept for a while; the time they cover
# is folded into minute, hour and day buckets as they arrive (digitalme.monitoring.uptime).

uptime_components = Table(
    "telemetry_uptime_components",
    metadata,
    Column("component", String(100), primary_key=True),
    Column("source", String(16), primary_key=True),
    Column("first_at", Double, nullable=False),
    Column("last_at", Double, nullable=False),
    Column("last_status", String(16), nullable=False),
    Column("interval", Double, nullable=False),
    Column("incident_id", String(36), nullable=True),
)

uptime_heartbeats = Table(
    "telemetry_uptime_heartbeats",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("component", String(100), nullable=False),
    Column("source", String(16), nullable=False),
    Column("at", Double, nullable=False),
    Column("status", String(16), nullable=False),
    Column("duration_ms", Double, nullable=True),
    Column("interval", Double, nullable=False),
    Column("failing", JSON, nullable=False),
    Column("message", Text, nullable=False),
)
Index(
    "ix_telemetry_uptime_heartbeats_component_source_at",
    uptime_heartbeats.c.component,
    uptime_heartbeats.c.source,
    uptime_heartbeats.c.at,
)
Index("ix_telemetry_uptime_heartbeats_at", uptime_heartbeats.c.at)

uptime_buckets = Table(
    "telemetry_uptime_buckets",
    metadata,
    Column("component", String(100), primary_key=True),
    Column("source", String(16), primary_key=True),
    Column("level", Integer, primary_key=True),  # 60, 3600 or 86400 seconds
    Column("start", Double, primary_key=True),
    Column("up_s", Double, nullable=False),
    Column("degraded_s", Double, nullable=False),
    Column("down_s", Double, nullable=False),
    Column("unknown_s", Double, nullable=False),
    Column("maintenance_s", Double, nullable=False),
    Column("beats", Integer, nullable=False),
    Column("failed_beats", Integer, nullable=False),
    Column("duration_count", Integer, nullable=False),
    Column("duration_sum", Double, nullable=False),
    Column("duration_max", Double, nullable=True),
    Column("duration_sketch", LargeBinary, nullable=True),
)
Index("ix_telemetry_uptime_buckets_level_start", uptime_buckets.c.level, uptime_buckets.c.start)

uptime_incidents = Table(
    "telemetry_uptime_incidents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("component", String(100), nullable=False),
    Column("source", String(16), nullable=False),
    Column("cause", String(16), nullable=False),  # down | unknown
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double, nullable=True),
    Column("failing", JSON, nullable=False),
    Column("description", Text, nullable=False),
)
Index(
    "ix_telemetry_uptime_incidents_component_started_at",
    uptime_incidents.c.component,
    uptime_incidents.c.started_at,
)
Index("ix_telemetry_uptime_incidents_started_at", uptime_incidents.c.started_at)
Index("ix_telemetry_uptime_incidents_ended_at", uptime_incidents.c.ended_at)

maintenance_windows = Table(
    "telemetry_maintenance_windows",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("components", JSON, nullable=False),
    Column("starts_at", Double, nullable=False),
    Column("ends_at", Double, nullable=False),
    Column("recurrence", String(16), nullable=True),
    Column("until", Double, nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", Double, nullable=False),
)

deployments = Table(
    "telemetry_deployments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("version", String(100), nullable=False),
    Column("deployed_by", String(200), nullable=False),
    Column("at", Double, nullable=False),
    Column("description", Text, nullable=False),
)
Index("ix_telemetry_deployments_at", deployments.c.at)

# -- scale-out (migration 0005) ------------------------------------------------
# One row per lease (``alerting``): who leads, until when, and the fencing token
# that grows with every change of holder (digitalme.monitoring.cluster.lease).
leases = Table(
    "telemetry_leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("acquired_at", Double, nullable=False),
)

# Admin changes made on an instance that does not lead, for the leader to apply
# (digitalme.monitoring.cluster.commands); ``outcome`` is set once applied.
alert_commands = Table(
    "telemetry_alert_commands",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("done_at", Double, nullable=True),
    Column("outcome", JSON, nullable=True),
)
Index("ix_telemetry_alert_commands_done_at", alert_commands.c.done_at, alert_commands.c.id)

# The live hub's messages for the other instances when there is no Redis
# (digitalme.monitoring.dashboard.store_backplane): each instance appends its
# JSON envelopes and polls for the others' by id; rows live for about a minute.
hub_messages = Table(
    "telemetry_hub_messages",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("origin", String(200), nullable=False),
    Column("body", Text, nullable=False),
)
Index("ix_telemetry_hub_messages_at", hub_messages.c.at)
