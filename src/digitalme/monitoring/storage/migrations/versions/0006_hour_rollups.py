"""hour roll-ups for long windows: the busiest minute of each hour per metric, security
events per hour, address and type

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Both are written by the retention job (digitalme.monitoring.storage.retention):
the minute peaks when it rolls minutes up into hours (hours rolled up before
this revision have none; queries read their minutes instead), the security
hours from the stored events, the oldest first, on its first run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_minute_peaks",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "hour"),
    )
    op.create_table(
        "telemetry_security_hours",
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False),
    )
    op.create_index(
        "ix_telemetry_security_hours_hour_ip_type",
        "telemetry_security_hours",
        ["hour", "client_ip", "event_type", "weight"],
    )
    op.create_table(
        "telemetry_item_rollups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("done_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("telemetry_item_rollups")
    op.drop_index("ix_telemetry_security_hours_hour_ip_type", table_name="telemetry_security_hours")
    op.drop_table("telemetry_security_hours")
    op.drop_table("telemetry_minute_peaks")
