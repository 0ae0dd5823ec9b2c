"""The root of the monitoring layer's typed errors.

Each part subclasses it (``StorageError``, the exporters' errors, ...) and puts
meaning in fields (``permanent``, ``field``), never in message strings.
"""

from __future__ import annotations


class MonitoringError(Exception):
    """Root of every error the monitoring layer raises on purpose."""
