"""uptime: components, heartbeats, minute/hour/day buckets, incidents, maintenance
windows and deployment markers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "telemetry_uptime_components",
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("first_at", sa.Double(), nullable=False),
        sa.Column("last_at", sa.Double(), nullable=False),
        sa.Column("last_status", sa.String(16), nullable=False),
        sa.Column("interval", sa.Double(), nullable=False),
        sa.Column("incident_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("component", "source"),
    )
    op.create_table(
        "telemetry_uptime_heartbeats",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("interval", sa.Double(), nullable=False),
        sa.Column("failing", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_telemetry_uptime_heartbeats_component_source_at",
        "telemetry_uptime_heartbeats",
        ["component", "source", "at"],
    )
    op.create_index("ix_telemetry_uptime_heartbeats_at", "telemetry_uptime_heartbeats", ["at"])
    op.create_table(
        "telemetry_uptime_buckets",
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("start", sa.Double(), nullable=False),
        sa.Column("up_s", sa.Double(), nullable=False),
        sa.Column("degraded_s", sa.Double(), nullable=False),
        sa.Column("down_s", sa.Double(), nullable=False),
        sa.Column("unknown_s", sa.Double(), nullable=False),
        sa.Column("maintenance_s", sa.Double(), nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
        sa.Column("failed_beats", sa.Integer(), nullable=False),
        sa.Column("duration_count", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Double(), nullable=False),
        sa.Column("duration_max", sa.Double(), nullable=True),
        sa.Column("duration_sketch", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("component", "source", "level", "start"),
    )
    op.create_index(
        "ix_telemetry_uptime_buckets_level_start", "telemetry_uptime_buckets", ["level", "start"]
    )
    op.create_table(
        "telemetry_uptime_incidents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("failing", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_telemetry_uptime_incidents_component_started_at",
        "telemetry_uptime_incidents",
        ["component", "started_at"],
    )
    op.create_index(
        "ix_telemetry_uptime_incidents_started_at", "telemetry_uptime_incidents", ["started_at"]
    )
    op.create_index(
        "ix_telemetry_uptime_incidents_ended_at", "telemetry_uptime_incidents", ["ended_at"]
    )
    op.create_table(
        "telemetry_maintenance_windows",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("recurrence", sa.String(16), nullable=True),
        sa.Column("until", sa.Double(), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "telemetry_deployments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("deployed_by", sa.String(200), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_telemetry_deployments_at", "telemetry_deployments", ["at"])


def downgrade() -> None:
    op.drop_index("ix_telemetry_deployments_at", table_name="telemetry_deployments")
    op.drop_table("telemetry_deployments")
    op.drop_table("telemetry_maintenance_windows")
    for index in ("ended_at", "started_at", "component_started_at"):
        op.drop_index(
            f"ix_telemetry_uptime_incidents_{index}", table_name="telemetry_uptime_incidents"
        )
    op.drop_table("telemetry_uptime_incidents")
    op.drop_index("ix_telemetry_uptime_buckets_level_start", table_name="telemetry_uptime_buckets")
    op.drop_table("telemetry_uptime_buckets")
    op.drop_index("ix_telemetry_uptime_heartbeats_at", table_name="telemetry_uptime_heartbeats")
    op.drop_index(
        "ix_telemetry_uptime_heartbeats_component_source_at",
        table_name="telemetry_uptime_heartbeats",
    )
    op.drop_table("telemetry_uptime_heartbeats")
    op.drop_table("telemetry_uptime_components")
