"""dispatch: job priority and per-owner concurrency keys

Revision ID: 0011_dispatch
Revises: 0010_paused_types
Create Date: 2026-12-01 11:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011_dispatch"
down_revision: str | None = "0010_paused_types"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("concurrency_key", sa.String(length=200), nullable=True))
    op.add_column("jobs", sa.Column("concurrency_limit", sa.SmallInteger(), nullable=True))
    op.create_check_constraint(op.f("ck_jobs_priority_range"), "jobs", "priority BETWEEN -10 AND 10")
    op.create_check_constraint(
        op.f("ck_jobs_concurrency_pair"),
        "jobs",
        "(concurrency_key IS NULL) = (concurrency_limit IS NULL) AND "
        "(concurrency_limit IS NULL OR concurrency_limit BETWEEN 1 AND 1000)",
    )
    # Counting an (owner, key)'s running jobs at claim time, and finding its next waiting one.
    op.create_index(
        "ix_jobs_concurrency_running",
        "jobs",
        ["owner_id", "concurrency_key"],
        postgresql_where=sa.text("concurrency_key IS NOT NULL AND status = 'running'"),
    )
    op.create_index(
        "ix_jobs_concurrency_waiting",
        "jobs",
        ["owner_id", "concurrency_key", "scheduled_at"],
        postgresql_where=sa.text("concurrency_key IS NOT NULL AND status IN ('pending', 'retrying')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_concurrency_waiting", table_name="jobs")
    op.drop_index("ix_jobs_concurrency_running", table_name="jobs")
    op.drop_constraint(op.f("ck_jobs_concurrency_pair"), "jobs", type_="check")
    op.drop_constraint(op.f("ck_jobs_priority_range"), "jobs", type_="check")
    op.drop_column("jobs", "concurrency_limit")
    op.drop_column("jobs", "concurrency_key")
    op.drop_column("jobs", "priority")
