"""Tables of the telemetry store (SQLAlchemy Core, its own MetaData).

Every table name starts with ``telemetry_`` so the store can share a PostgreSQL
database with the host. Times are epoch seconds in double precision; every row
carries the ``instance`` that wrote it, for several instances on one database.

Metric buckets exist at three resolutions (:data:`RESOLUTIONS`): the pipeline
writes 10 s buckets, the retention job rolls completed ones up into 60 s and
3600 s buckets and records how far each roll-up has got in
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

RESOLUTIONS: tuple[int, ...] = (10, 60, 3600)
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
