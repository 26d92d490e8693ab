"""batches: job dependencies (status `blocked`, job_dependencies, promotion in the parent's transaction),
batches of jobs

Revision ID: 0015_batches
Revises: 0014_webhooks
Create Date: 2026-12-01 13:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0015_batches"
down_revision: str | None = "0014_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'cancelled', 'completed', 'failed', 'pending', 'retrying', 'running'"
NEW_STATUSES = "'blocked', 'cancelled', 'completed', 'failed', 'pending', 'retrying', 'running'"

# Runs in the transaction that ends a parent (END_RUNS, a cancel, or this trigger itself), so a child's
# move is committed with the parent's outcome or not at all.
# - completed: each blocked child, locked in id order (two parents ending at once queue on the child's
#   row lock; the second one's count, a fresh snapshot in READ COMMITTED, sees the first one's commit),
#   becomes pending when no parent is left unfinished. `WHERE status = 'blocked'` makes the move happen
#   once however many times a parent's end is replayed; the caller enqueues pending children after commit
#   (and reconcile enqueues any pending job whose enqueue was lost). Its due time becomes now (unless it
#   was scheduled later): the time it spent blocked is not time it waited for a worker (the oldest-wait
#   gauge, the order among due jobs).
# - failed or cancelled: every blocked child is cancelled with an error naming this parent; their own
#   updates fire this trigger again, so grandchildren follow (transitively).
# The error text matches `backend.domain.lifecycle.parent_ended_error`.
ON_PARENT_END = """
CREATE FUNCTION jp_on_parent_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    child uuid;
BEGIN
    IF NEW.status = 'completed' THEN
        FOR child IN SELECT d.child_id FROM job_dependencies d WHERE d.parent_id = NEW.id
                     ORDER BY d.child_id LOOP
            PERFORM 1 FROM jobs WHERE id = child AND status = 'blocked' FOR UPDATE;
            IF FOUND AND NOT EXISTS (
                SELECT 1 FROM job_dependencies d JOIN jobs p ON p.id = d.parent_id
                WHERE d.child_id = child AND p.status <> 'completed'
            ) THEN
                UPDATE jobs SET status = 'pending', scheduled_at = greatest(scheduled_at, now()),
                                updated_at = now()
                WHERE id = child AND status = 'blocked';
            END IF;
        END LOOP;
    ELSE
        UPDATE jobs SET status = 'cancelled', error = 'dependency ' || NEW.id || ' ' || NEW.status,
               finished_at = now(), updated_at = now()
        WHERE id IN (SELECT d.child_id FROM job_dependencies d WHERE d.parent_id = NEW.id)
          AND status = 'blocked';
    END IF;
    RETURN NULL;
END
$$
"""
TRIGGER = """
CREATE TRIGGER jp_parent_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('cancelled', 'completed', 'failed'))
EXECUTE FUNCTION jp_on_parent_end()
"""


def upgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_status_valid"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status_valid"), "jobs", f"status IN ({NEW_STATUSES})")
    op.create_table(
        "batches",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("owner_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["api_keys.id"], name=op.f("fk_batches_owner_id_api_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.add_column("jobs", sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column(
        "jobs",
        sa.Column(
            "depends_on", postgresql.ARRAY(postgresql.UUID(as_uuid=True)), server_default="{}", nullable=False
        ),
    )
    op.create_foreign_key(
        op.f("fk_jobs_batch_id_batches"), "jobs", "batches", ["batch_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index(
        "ix_jobs_batch",
        "jobs",
        ["batch_id", "created_at", "id"],
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_table(
        "job_dependencies",
        sa.Column("child_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("parent_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"], ["jobs.id"], name=op.f("fk_job_dependencies_child_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["jobs.id"], name=op.f("fk_job_dependencies_parent_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("child_id", "parent_id", name=op.f("pk_job_dependencies")),
    )
    op.create_index("ix_job_dependencies_parent", "job_dependencies", ["parent_id", "child_id"])
    # blocked jobs count against MAX_WAITING_JOBS_PER_KEY like waiting ones (a bounded count per owner)
    op.create_index(
        "ix_jobs_owner_blocked", "jobs", ["owner_id"], postgresql_where=sa.text("status = 'blocked'")
    )
    op.execute(ON_PARENT_END)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER jp_parent_ended ON jobs")
    op.execute("DROP FUNCTION jp_on_parent_end()")
    op.drop_index("ix_jobs_owner_blocked", table_name="jobs")
    op.drop_table("job_dependencies")
    op.drop_index("ix_jobs_batch", table_name="jobs")
    op.drop_constraint(op.f("fk_jobs_batch_id_batches"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "depends_on")
    op.drop_column("jobs", "batch_id")
    op.drop_table("batches")
    op.execute("UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE status = 'blocked'")
    op.drop_constraint(op.f("ck_jobs_status_valid"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status_valid"), "jobs", f"status IN ({OLD_STATUSES})")
