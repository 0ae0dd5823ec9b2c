"""the active users of each 5-minute period, every instance's minutes in one sketch

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

Written by the retention job (digitalme.monitoring.storage.retention) from the
minute sketches, the oldest first, on its first run; until a period is rolled up
its minutes are read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_active_user_periods",
        sa.Column("start", sa.Double(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("start"),
    )


def downgrade() -> None:
    op.drop_table("telemetry_active_user_periods")
