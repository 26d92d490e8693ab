"""job metrics: fleet-wide totals of job outcomes and wait/run histograms for /metrics, fed by the stats
duty's fold; a trigger records retries as stats events, and a job inserted already ended has its end event

Revision ID: 0018_job_metrics
Revises: 0017_traceparent
Create Date: 2026-12-02 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0018_job_metrics"
down_revision: str | None = "0017_traceparent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of backend/domain/stats.py's EventKind.RETRIED (a migration must not change with the code).
# Every way a run ends with its job going back to wait (END_RUNS: an error with attempts left, a lapsed
# lease, a hand-back at shut-down) moves it from running to retrying: one trigger sees them all.
ON_RETRY = """
CREATE FUNCTION jp_stats_on_retry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_events (at, owner_id, type, kind) VALUES (now(), NEW.owner_id, NEW.type, 4);
    RETURN NULL;
END
$$
"""
RETRY_TRIGGER = """
CREATE TRIGGER jp_stats_retried AFTER UPDATE OF status ON jobs FOR EACH ROW
WHEN (OLD.status = 'running' AND NEW.status = 'retrying')
EXECUTE FUNCTION jp_stats_on_retry()
"""

# A job can be inserted already ended: a child of a parent that failed or was cancelled before it was
# submitted is born cancelled (`first_status`). Until now only the UPDATE trigger wrote end events, so
# neither /stats nor the totals saw that end; the insert trigger now writes it (at its finished_at).
ON_INSERT = """
CREATE OR REPLACE FUNCTION jp_stats_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_events (at, owner_id, type, kind) SELECT created_at, owner_id, type, 0 FROM new_jobs;
    INSERT INTO stats_events (at, owner_id, type, kind)
    SELECT coalesce(finished_at, created_at), owner_id, type,
           CASE status WHEN 'completed' THEN 1 WHEN 'failed' THEN 2 ELSE 3 END
    FROM new_jobs WHERE status IN ('cancelled', 'completed', 'failed');
    RETURN NULL;
END
$$
"""
ON_INSERT_0008 = """
CREATE OR REPLACE FUNCTION jp_stats_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_events (at, owner_id, type, kind) SELECT created_at, owner_id, type, 0 FROM new_jobs;
    RETURN NULL;
END
$$
"""


# A few hundred rows at most (types x outcomes, types x 2 measures x buckets), read whole by /metrics.
def upgrade() -> None:
    op.create_table(
        "metrics_job_totals",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type", "outcome", name=op.f("pk_metrics_job_totals")),
    )
    op.create_table(
        "metrics_job_seconds",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("measure", sa.SmallInteger(), nullable=False),
        sa.Column("le", sa.Float(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("sum_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("type", "measure", "le", name=op.f("pk_metrics_job_seconds")),
    )
    op.execute(ON_RETRY)
    op.execute(RETRY_TRIGGER)
    op.execute(ON_INSERT)


def downgrade() -> None:
    op.execute(ON_INSERT_0008)
    op.execute("DROP TRIGGER jp_stats_retried ON jobs")
    op.execute("DROP FUNCTION jp_stats_on_retry()")
    op.execute("DELETE FROM stats_events WHERE kind = 4")  # the rollups' fold knows no such kind before
    op.drop_table("metrics_job_seconds")
    op.drop_table("metrics_job_totals")
