"""telemetry store tables: items, metric series and buckets, roll-up progress

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_dependencies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("operation_id", sa.String(length=64), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("result_code", sa.String(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_dependencies", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_dependencies_ts", ["ts"], unique=False)

    op.create_table(
        "telemetry_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("operation_id", sa.String(length=64), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("measurements", sa.JSON(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_events", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_events_name_ts", ["name", "ts"], unique=False)
        batch_op.create_index("ix_telemetry_events_ts", ["ts"], unique=False)

    op.create_table(
        "telemetry_exceptions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("operation_id", sa.String(length=64), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("stack", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_exceptions", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_exceptions_ts", ["ts"], unique=False)
        batch_op.create_index("ix_telemetry_exceptions_type_ts", ["type", "ts"], unique=False)

    op.create_table(
        "telemetry_metric_series",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("dimensions", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    with op.batch_alter_table("telemetry_metric_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_telemetry_metric_series_name"), ["name"], unique=False)

    op.create_table(
        "telemetry_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("operation_id", sa.String(length=64), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_requests", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_requests_ts", ["ts"], unique=False)

    op.create_table(
        "telemetry_rollups",
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("done_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("resolution"),
    )
    op.create_table(
        "telemetry_security_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("operation_id", sa.String(length=64), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_security_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_security_events_event_type_ts", ["event_type", "ts"], unique=False
        )
        batch_op.create_index("ix_telemetry_security_events_ts", ["ts"], unique=False)

    op.create_table(
        "telemetry_metric_buckets",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("start", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["telemetry_metric_series.id"],
        ),
        sa.PrimaryKeyConstraint("series_id", "resolution", "start", "instance"),
    )
    with op.batch_alter_table("telemetry_metric_buckets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_metric_buckets_resolution_start", ["resolution", "start"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("telemetry_metric_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_metric_buckets_resolution_start")

    op.drop_table("telemetry_metric_buckets")
    with op.batch_alter_table("telemetry_security_events", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_security_events_ts")
        batch_op.drop_index("ix_telemetry_security_events_event_type_ts")

    op.drop_table("telemetry_security_events")
    op.drop_table("telemetry_rollups")
    with op.batch_alter_table("telemetry_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_requests_ts")

    op.drop_table("telemetry_requests")
    with op.batch_alter_table("telemetry_metric_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_telemetry_metric_series_name"))

    op.drop_table("telemetry_metric_series")
    with op.batch_alter_table("telemetry_exceptions", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_exceptions_type_ts")
        batch_op.drop_index("ix_telemetry_exceptions_ts")

    op.drop_table("telemetry_exceptions")
    with op.batch_alter_table("telemetry_events", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_events_ts")
        batch_op.drop_index("ix_telemetry_events_name_ts")

    op.drop_table("telemetry_events")
    with op.batch_alter_table("telemetry_dependencies", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_dependencies_ts")

    op.drop_table("telemetry_dependencies")
