"""alerting tables: alerts, events, silences, rules, outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Alert state (incl. pending timers), immutable alert events, silences, rules made
through the API, and the delivery outbox with its attempts. The retention job
never deletes from these tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_alert_rules",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "telemetry_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=True),
        sa.Column("pending_since", sa.Double(), nullable=True),
        sa.Column("last_active_at", sa.Double(), nullable=True),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("affected_components", sa.JSON(), nullable=False),
        sa.Column("last_notified_at", sa.Double(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("notified_channels", sa.JSON(), nullable=False),
        sa.Column("muted_until", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_alerts_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_telemetry_alerts_fingerprint_created_at",
            ["fingerprint", "created_at"],
            unique=False,
        )
        batch_op.create_index("ix_telemetry_alerts_muted_until", ["muted_until"], unique=False)
        batch_op.create_index(
            "ix_telemetry_alerts_rule_id_created_at", ["rule_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_telemetry_alerts_state", ["state"], unique=False)

    op.create_table(
        "telemetry_silences",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_silences", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_silences_ends_at", ["ends_at"], unique=False)

    op.create_table(
        "telemetry_alert_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("affected_components", sa.JSON(), nullable=False),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["telemetry_alerts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_alert_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_alert_events_alert_id_at", ["alert_id", "at"], unique=False
        )
        batch_op.create_index("ix_telemetry_alert_events_at", ["at"], unique=False)

    op.create_table(
        "telemetry_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=50), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["telemetry_alert_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("telemetry_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_deliveries_alert_id", ["alert_id"], unique=False)
        batch_op.create_index("ix_telemetry_deliveries_event_id", ["event_id"], unique=False)
        batch_op.create_index(
            "ix_telemetry_deliveries_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )

    op.create_table(
        "telemetry_delivery_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["telemetry_deliveries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_delivery_attempts_delivery_id_at", ["delivery_id", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("telemetry_delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_delivery_attempts_delivery_id_at")

    op.drop_table("telemetry_delivery_attempts")
    with op.batch_alter_table("telemetry_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_deliveries_status_next_attempt_at")
        batch_op.drop_index("ix_telemetry_deliveries_event_id")
        batch_op.drop_index("ix_telemetry_deliveries_alert_id")

    op.drop_table("telemetry_deliveries")
    with op.batch_alter_table("telemetry_alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_alert_events_at")
        batch_op.drop_index("ix_telemetry_alert_events_alert_id_at")

    op.drop_table("telemetry_alert_events")
    with op.batch_alter_table("telemetry_silences", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_silences_ends_at")

    op.drop_table("telemetry_silences")
    with op.batch_alter_table("telemetry_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_alerts_state")
        batch_op.drop_index("ix_telemetry_alerts_rule_id_created_at")
        batch_op.drop_index("ix_telemetry_alerts_muted_until")
        batch_op.drop_index("ix_telemetry_alerts_fingerprint_created_at")
        batch_op.drop_index("ix_telemetry_alerts_created_at")

    op.drop_table("telemetry_alerts")
    op.drop_table("telemetry_alert_rules")
