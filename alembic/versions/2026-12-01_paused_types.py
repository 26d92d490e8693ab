"""paused types: job types an admin paused (their waiting jobs are not claimed until resumed)

Revision ID: 0010_paused_types
Revises: 0009_ui_sessions
Create Date: 2026-12-01 11:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010_paused_types"
down_revision: str | None = "0009_ui_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paused_types",
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("type", name=op.f("pk_paused_types")),
    )


def downgrade() -> None:
    op.drop_table("paused_types")
