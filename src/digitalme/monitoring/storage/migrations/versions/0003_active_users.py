"""active users: one HyperLogLog sketch per minute and instance; a covering index of
security events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Distinct authenticated users, counted from every request before sampling
(digitalme.monitoring.telemetry.users); the retention job deletes minutes with
the 60 s metric buckets. The security figures count events per (address,
type) from ix_telemetry_security_events_ts_ip_type alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_active_users",
        sa.Column("minute", sa.Double(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "instance"),
    )
    op.create_index(
        "ix_telemetry_security_events_ts_ip_type",
        "telemetry_security_events",
        ["ts", "client_ip", "event_type", "weight"],
    )


def downgrade() -> None:
    op.drop_index("ix_telemetry_security_events_ts_ip_type", table_name="telemetry_security_events")
    op.drop_table("telemetry_active_users")
