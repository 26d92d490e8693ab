"""group claims: one statement claims every delivery a worker fetched together, caps still exact

Revision ID: 0019_group_claims
Revises: 0018_job_metrics
Create Date: 2026-12-03 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_group_claims"
down_revision: str | None = "0018_job_metrics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# `jp_below_caps` (0013) for a claim that already holds other caps' locks: it never waits for a lock.
# NULL when a cap's lock is held by another transaction (the caller claims that job on its own, with the
# waiting `jp_below_caps`). A transaction that waits for a cap lock thus holds at most the locks of one job,
# taken in the fixed order (owner, key, type), exactly as a single claim: no two claims can deadlock.
# With every lock it needs taken, `jp_below_caps` takes them again at once (they are re-entrant) and counts.
TRY_BELOW_CAPS = """
CREATE FUNCTION jp_try_below_caps(p_owner uuid, p_owner_cap integer, p_key text, p_key_limit integer,
                                  p_type text, p_type_cap integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF (p_owner_cap > 0 AND NOT pg_try_advisory_xact_lock(1785684595, hashtext(p_owner::text)))
       OR (p_key IS NOT NULL
           AND NOT pg_try_advisory_xact_lock(1785684596, hashtext(p_owner::text || '/' || p_key)))
       OR (p_type_cap IS NOT NULL AND NOT pg_try_advisory_xact_lock(1785684597, hashtext(p_type))) THEN
        RETURN NULL;
    END IF;
    RETURN jp_below_caps(p_owner, p_owner_cap, p_key, p_key_limit, p_type, p_type_cap);
END
$$
"""


def claimed(token: str, source: str, which: str) -> str:
    """The claim of the jobs `which` names (with `source`, the rows it joins): a query returning a
    `jp_claim_group` row per job claimed, with its `job_runs` row inserted. The conditions beyond `which`
    are those of the single claim (backend/repo/jobs.py, CLAIM)."""
    return f"""
    WITH claimed AS (
        UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, claim_token = {token},
               worker_id = p_worker, lease_expires_at = now() + make_interval(secs => p_lease),
               started_at = coalesce(j.started_at, now()), error = NULL, progress = 0, updated_at = now()
        {source}
        WHERE {which} AND j.status IN ('pending', 'retrying') AND j.scheduled_at <= now()
              AND NOT j.cancel_requested
        RETURNING j.id, j.claim_token, j.attempts, j.max_attempts, j.type, j.payload, j.owner_id,
                  j.traceparent
    ), run AS (
        INSERT INTO job_runs (job_id, attempt, claim_token, worker_id, started_at)
        SELECT c.id, c.attempts, c.claim_token, p_worker, clock_timestamp() FROM claimed c
    )
    SELECT c.id, c.claim_token, c.attempts::integer, c.max_attempts::integer, c.type::text, c.payload,
           c.owner_id, c.traceparent::text, false FROM claimed c;"""


# The jobs of a group that no cap applies to (claimed in one statement), and that no paused type holds.
UNCAPPED = """j.id = q.id AND NOT EXISTS (SELECT 1 FROM paused_types p WHERE p.type = j.type)
              AND coalesce((SELECT k.max_running FROM api_keys k WHERE k.id = j.owner_id), p_owner_cap) = 0
              AND j.concurrency_key IS NULL AND (p_type_caps ->> j.type) IS NULL"""

# Claim a group of deliveries (job ids with a fresh claim token each) for one worker: the jobs no cap
# applies to in one UPDATE ... FROM unnest, then each capped job in id order through `jp_try_below_caps`:
# each of its counts is a later query of the same transaction, so it sees the claims made before it here,
# and the caps stay exact. A row per job claimed (busy = false), and per capped job whose cap lock was busy
# (busy = true, nothing claimed: the caller claims it on its own). Jobs not claimable are left out.
# The conditions are those of the single claim (backend/repo/jobs.py, CLAIM).
CLAIM_GROUP = f"""
CREATE FUNCTION jp_claim_group(p_ids uuid[], p_tokens uuid[], p_worker text, p_lease double precision,
                               p_owner_cap integer, p_type_caps jsonb)
RETURNS TABLE (id uuid, claim_token uuid, attempts integer, max_attempts integer, type text,
               payload jsonb, owner_id uuid, traceparent text, busy boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    r record;
    ok boolean;
    n integer;
BEGIN
    RETURN QUERY {claimed("q.token", "FROM unnest(p_ids, p_tokens) AS q(id, token)", UNCAPPED)}
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = cardinality(p_ids) THEN  -- all claimed: no capped job to look for
        RETURN;
    END IF;

    FOR r IN
        SELECT j.id, q.token, j.owner_id, coalesce(k.max_running, p_owner_cap) AS owner_cap,
               j.concurrency_key, j.concurrency_limit, j.type, (p_type_caps ->> j.type)::int AS type_cap
        FROM unnest(p_ids, p_tokens) AS q(id, token)
        JOIN jobs j ON j.id = q.id
        LEFT JOIN api_keys k ON k.id = j.owner_id
        WHERE j.status IN ('pending', 'retrying') AND j.scheduled_at <= now() AND NOT j.cancel_requested
              AND NOT EXISTS (SELECT 1 FROM paused_types p WHERE p.type = j.type)
              AND NOT (coalesce(k.max_running, p_owner_cap) = 0 AND j.concurrency_key IS NULL
                       AND (p_type_caps ->> j.type) IS NULL)
        ORDER BY j.id
    LOOP
        ok := jp_try_below_caps(r.owner_id, r.owner_cap, r.concurrency_key, r.concurrency_limit, r.type,
                                r.type_cap);
        IF ok IS NULL THEN
            RETURN QUERY SELECT r.id, r.token, NULL::integer, NULL::integer, r.type::text, NULL::jsonb,
                                r.owner_id, NULL::text, true;
        ELSIF ok THEN
            RETURN QUERY {claimed("r.token", "", "j.id = r.id")}
        END IF;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(TRY_BELOW_CAPS)
    op.execute(CLAIM_GROUP)


def downgrade() -> None:
    op.execute("DROP FUNCTION jp_claim_group(uuid[], uuid[], text, double precision, integer, jsonb)")
    op.execute("DROP FUNCTION jp_try_below_caps(uuid, integer, text, integer, text, integer)")
