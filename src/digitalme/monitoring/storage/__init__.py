"""The telemetry store: schema, migrations, the store sink, queries and retention."""

from digitalme.monitoring.storage.errors import (
    QueryError,
    StorageError,
    StoreWriteError,
    UnsupportedDatabase,
)
from digitalme.monitoring.storage.migrate import upgrade, upgrade_async
from digitalme.monitoring.storage.queries import Aggregation, TelemetryQueries
from digitalme.monitoring.storage.retention import CompactionReport, RetentionJob, compact
from digitalme.monitoring.storage.store import TelemetryStore

__all__ = [
    "Aggregation",
    "CompactionReport",
    "QueryError",
    "RetentionJob",
    "StorageError",
    "StoreWriteError",
    "TelemetryQueries",
    "TelemetryStore",
    "UnsupportedDatabase",
    "compact",
    "upgrade",
    "upgrade_async",
]
