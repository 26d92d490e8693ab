"""schedules: a job submission repeated on a cron expression or a fixed step; jobs know their fire

Revision ID: 0012_schedules
Revises: 0011_dispatch
Create Date: 2026-12-01 12:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0012_schedules"
down_revision: str | None = "0011_dispatch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=100), nullable=True),
        sa.Column("every_seconds", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("job", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("overlap", sa.String(length=8), server_default="allow", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(cron IS NULL) <> (every_seconds IS NULL)", name=op.f("ck_schedules_one_timing")),
        sa.CheckConstraint("every_seconds >= 1", name=op.f("ck_schedules_every_seconds_positive")),
        sa.CheckConstraint("overlap IN ('allow', 'skip')", name=op.f("ck_schedules_overlap_valid")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["api_keys.id"], name=op.f("fk_schedules_owner_id_api_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index("ix_schedules_owner", "schedules", ["owner_id", "id"])
    op.create_index("ix_schedules_due", "schedules", ["next_run_at"], postgresql_where=sa.text("NOT paused"))
    op.add_column("jobs", sa.Column("schedule_id", sa.UUID(), nullable=True))
    op.add_column("jobs", sa.Column("schedule_fire_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_jobs_schedule_id_schedules"),
        "jobs",
        "schedules",
        ["schedule_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ux_jobs_schedule_fire",
        "jobs",
        ["schedule_id", "schedule_fire_at"],
        unique=True,
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ux_jobs_schedule_fire", table_name="jobs", postgresql_where=sa.text("schedule_id IS NOT NULL")
    )
    op.drop_constraint(op.f("fk_jobs_schedule_id_schedules"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "schedule_fire_at")
    op.drop_column("jobs", "schedule_id")
    op.drop_index("ix_schedules_due", table_name="schedules", postgresql_where=sa.text("NOT paused"))
    op.drop_index("ix_schedules_owner", table_name="schedules")
    op.drop_table("schedules")
