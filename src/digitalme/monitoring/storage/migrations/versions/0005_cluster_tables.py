"""scale-out: the leader lease, the queue of admin changes for the leader, hub messages

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "telemetry_leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("acquired_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "telemetry_alert_commands",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("done_at", sa.Double(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_telemetry_alert_commands_done_at",
        "telemetry_alert_commands",
        ["done_at", "id"],
    )
    op.create_table(
        "telemetry_hub_messages",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_telemetry_hub_messages_at", "telemetry_hub_messages", ["at"])


def downgrade() -> None:
    op.drop_index("ix_telemetry_hub_messages_at", table_name="telemetry_hub_messages")
    op.drop_table("telemetry_hub_messages")
    op.drop_index("ix_telemetry_alert_commands_done_at", table_name="telemetry_alert_commands")
    op.drop_table("telemetry_alert_commands")
    op.drop_table("telemetry_leases")
