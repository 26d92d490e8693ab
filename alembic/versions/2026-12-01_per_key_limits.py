"""per-key limits: indexes by owner, and the claim's exact running-cap gate

Revision ID: 0004_per_key_limits
Revises: 0003_deployment_id
Create Date: 2026-12-01 08:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004_per_key_limits"
down_revision: str | None = "0003_deployment_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Called from the claim's WHERE (backend/repo/jobs.py, CLAIM) for the one row being claimed. The advisory
# lock serialises the claims of one owner until their transactions end; a VOLATILE function's query takes
# a fresh snapshot, so it sees every claim committed before the lock was granted: the cap is exact across
# any number of workers.
OWNER_BELOW_CAP = """
CREATE FUNCTION jp_owner_below_cap(p_owner uuid, p_cap integer, p_running text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1785684595, hashtext(p_owner::text));
    RETURN (SELECT count(*) FROM jobs WHERE owner_id = p_owner AND status = p_running) < p_cap;
END
$$
"""


def upgrade() -> None:
    op.execute(OWNER_BELOW_CAP)
    op.create_index(
        "ix_jobs_owner_waiting",
        "jobs",
        ["owner_id", "scheduled_at"],
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_jobs_owner_running", "jobs", ["owner_id"], postgresql_where=sa.text("status = 'running'")
    )
    op.create_index(
        "ix_jobs_owner_files", "jobs", ["owner_id"], postgresql_where=sa.text("result_file IS NOT NULL")
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION jp_owner_below_cap(uuid, integer, text)")
    op.drop_index("ix_jobs_owner_files", table_name="jobs")
    op.drop_index("ix_jobs_owner_running", table_name="jobs")
    op.drop_index("ix_jobs_owner_waiting", table_name="jobs")
