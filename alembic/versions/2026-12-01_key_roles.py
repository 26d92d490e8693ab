"""key roles: api_keys.role (client | admin) and the per-key max_running and rate_limit settings

Revision ID: 0007_key_roles
Revises: 0006_workers
Create Date: 2026-12-01 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_key_roles"
down_revision: str | None = "0006_workers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("role", sa.String(length=16), nullable=False, server_default="client")
    )
    op.add_column("api_keys", sa.Column("max_running", sa.Integer(), nullable=True))
    op.add_column("api_keys", sa.Column("rate_limit", sa.String(length=32), nullable=True))
    op.create_check_constraint(op.f("ck_api_keys_role_valid"), "api_keys", "role IN ('client', 'admin')")
    op.create_check_constraint(op.f("ck_api_keys_max_running_positive"), "api_keys", "max_running >= 1")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_api_keys_max_running_positive"), "api_keys", type_="check")
    op.drop_constraint(op.f("ck_api_keys_role_valid"), "api_keys", type_="check")
    op.drop_column("api_keys", "rate_limit")
    op.drop_column("api_keys", "max_running")
    op.drop_column("api_keys", "role")
