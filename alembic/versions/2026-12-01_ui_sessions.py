"""ui sessions: dashboard sign-ins, and the deployment's secret that signs their cookies

Revision ID: 0009_ui_sessions
Revises: 0008_stats
Create Date: 2026-12-01 11:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0009_ui_sessions"
down_revision: str | None = "0008_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 256 bits from PostgreSQL's strong random source (gen_random_uuid), made once per deployment, so every
# API process signs and checks session cookies with the same secret without any configuration.
RANDOM_SECRET = (
    "encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || "
    "gen_random_uuid()::text, 'UTF8')), 'hex')"
)


def upgrade() -> None:
    op.add_column(
        "deployment",
        sa.Column(
            "session_secret", sa.String(length=64), server_default=sa.text(RANDOM_SECRET), nullable=False
        ),
    )
    op.create_table(
        "ui_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_ui_sessions_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_ui_sessions")),
    )
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_ui_sessions_expires_at", table_name="ui_sessions")
    op.drop_table("ui_sessions")
    op.drop_column("deployment", "session_secret")
