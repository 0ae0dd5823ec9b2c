"""Alembic migrations of the telemetry store (version table ``telemetry_alembic_version``)."""
