"""stats: job events captured by triggers, rollups per bucket, latency histograms, live gauges

Revision ID: 0008_stats
Revises: 0007_key_roles
Create Date: 2026-12-01 10:55:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008_stats"
down_revision: str | None = "0007_key_roles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the values at the time of this migration (a migration must not change when the code
# does): event kinds of backend/domain/stats.py, terminal statuses of backend/domain/enums.py.
TERMINAL = "'cancelled', 'completed', 'failed'"

# Latency bins, 10 per decade: bin 0 is under 1 ms, bin b >= 1 is [10^((b-31)/10), 10^((b-30)/10)) seconds,
# bin 90 everything from 10^5.9 s (about 9 days) up. Inlined by the planner (one SQL expression).
BIN_FUNCTION = """
CREATE FUNCTION jp_stats_bin(seconds double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN
    CASE WHEN seconds IS NULL THEN NULL
         WHEN seconds < 0.001 THEN 0
         ELSE least(90, floor(10 * log(seconds)) + 31)::smallint END
"""
# The geometric middle of a bin (within ±12 % of any value in it); bin 0 reads as 0.5 ms.
BIN_VALUE_FUNCTION = """
CREATE FUNCTION jp_stats_bin_value(bin smallint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN
    CASE WHEN bin IS NULL THEN NULL WHEN bin = 0 THEN 0.0005 ELSE power(10.0, (bin - 30.5) / 10.0) END
"""

# Triggers, not repository code: every path that creates or ends a job (insert, batch insert, end of runs,
# cancel, bulk cancel, lease recovery, whatever comes next) is counted exactly once, and purge (which
# deletes jobs) never touches what was counted. Kinds: 0 created, 1 completed, 2 failed, 3 cancelled.
ON_INSERT = """
CREATE FUNCTION jp_stats_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_events (at, owner_id, type, kind) SELECT created_at, owner_id, type, 0 FROM new_jobs;
    RETURN NULL;
END
$$
"""
# `started_at` is the job's first start (the claim keeps it across retries; a manual retry clears it), so
# wait is created -> first start of the run cycle that ended, run is that start -> the end.
ON_END = """
CREATE FUNCTION jp_stats_on_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended timestamptz := coalesce(NEW.finished_at, now());
BEGIN
    INSERT INTO stats_events (at, owner_id, type, kind, wait_s, run_s)
    VALUES (ended, NEW.owner_id, NEW.type,
            CASE NEW.status WHEN 'completed' THEN 1 WHEN 'failed' THEN 2 ELSE 3 END,
            extract(epoch FROM NEW.started_at - NEW.created_at),
            extract(epoch FROM ended - NEW.started_at));
    RETURN NULL;
END
$$
"""
TRIGGERS = (
    """
    CREATE TRIGGER jp_stats_created AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jp_stats_on_insert()
    """,
    f"""
    CREATE TRIGGER jp_stats_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ({TERMINAL}))
    EXECUTE FUNCTION jp_stats_on_end()
    """,
)


def _counts() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.Integer(), server_default="0", nullable=False) for name in COUNTS]


COUNTS = ("created", "completed", "failed", "cancelled")
PERCENTILES = ("wait_p50", "wait_p95", "run_p50", "run_p95")
TS = sa.DateTime(timezone=True)


# stats_latency's key has the bucket before the measure: recomputing a bucket's percentiles reads both
# measures of it as one range of the primary key.
def upgrade() -> None:
    op.create_table(
        "stats_events",
        sa.Column("at", TS, nullable=False),
        sa.Column("owner_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("run_s", sa.Float(), nullable=True),
    )
    op.create_table(
        "stats_rollups",
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("owner_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("bucket", TS, nullable=False),
        *_counts(),
        *[sa.Column(name, sa.Float(), nullable=True) for name in PERCENTILES],
        sa.PrimaryKeyConstraint("grain", "owner_id", "type", "bucket", name=op.f("pk_stats_rollups")),
    )
    op.create_table(
        "stats_latency",
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("owner_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("bucket", TS, nullable=False),
        sa.Column("measure", sa.SmallInteger(), nullable=False),
        sa.Column("bin", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "grain", "owner_id", "type", "bucket", "measure", "bin", name=op.f("pk_stats_latency")
        ),
    )
    op.create_table(
        "stats_now",
        sa.Column("owner_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("oldest_pending_at", TS, nullable=True),
        sa.Column("as_of", TS, nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "type", name=op.f("pk_stats_now")),
    )
    for ddl in (BIN_FUNCTION, BIN_VALUE_FUNCTION, ON_INSERT, ON_END, *TRIGGERS):
        op.execute(ddl)


def downgrade() -> None:
    op.execute("DROP TRIGGER jp_stats_ended ON jobs")
    op.execute("DROP TRIGGER jp_stats_created ON jobs")
    op.execute("DROP FUNCTION jp_stats_on_end()")
    op.execute("DROP FUNCTION jp_stats_on_insert()")
    op.execute("DROP FUNCTION jp_stats_bin_value(smallint)")
    op.execute("DROP FUNCTION jp_stats_bin(double precision)")
    for table in ("stats_now", "stats_latency", "stats_rollups", "stats_events"):
        op.drop_table(table)
