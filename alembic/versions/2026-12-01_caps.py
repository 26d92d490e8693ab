"""caps: one claim-time gate for every running cap (owner, concurrency key, job type)

Revision ID: 0013_caps
Revises: 0012_schedules
Create Date: 2026-12-01 12:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013_caps"
down_revision: str | None = "0012_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Called from the claim's WHERE (backend/repo/jobs.py, CLAIM) for the one row being claimed, and only when
# at least one cap applies to it. For each cap that applies, in a fixed order (owner, then concurrency key,
# then type, so two claims never wait on each other's locks in opposite orders), it takes that cap's
# transaction-scoped advisory lock, then counts the cap's running jobs, up to the cap. A VOLATILE
# function's query takes a fresh snapshot, so the count sees every claim committed before the lock was
# granted, and a claim holds the lock until it commits: each cap is exact across any number of workers.
# A full cap refuses at once, so no later lock is taken. The owner's lock is the one `jp_owner_below_cap`
# (0004) takes, so workers still on it during a rolling deploy share it; that function stays for them.
# 'running' is a literal (not a parameter) so that the counts can use the partial indexes on it.
BELOW_CAPS = """
CREATE FUNCTION jp_below_caps(p_owner uuid, p_owner_cap integer, p_key text, p_key_limit integer,
                              p_type text, p_type_cap integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_owner_cap > 0 THEN
        PERFORM pg_advisory_xact_lock(1785684595, hashtext(p_owner::text));
        IF (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner_id = p_owner AND status = 'running'
                                  LIMIT p_owner_cap) r) >= p_owner_cap THEN
            RETURN false;
        END IF;
    END IF;
    IF p_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(1785684596, hashtext(p_owner::text || '/' || p_key));
        IF (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner_id = p_owner AND concurrency_key = p_key
                                  AND status = 'running' LIMIT p_key_limit) r) >= p_key_limit THEN
            RETURN false;
        END IF;
    END IF;
    IF p_type_cap IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(1785684597, hashtext(p_type));
        IF (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE type = p_type AND status = 'running'
                                  LIMIT p_type_cap) r) >= p_type_cap THEN
            RETURN false;
        END IF;
    END IF;
    RETURN true;
END
$$
"""


def upgrade() -> None:
    op.execute(BELOW_CAPS)


def downgrade() -> None:
    op.execute("DROP FUNCTION jp_below_caps(uuid, integer, text, integer, text, integer)")
