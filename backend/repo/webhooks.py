"""WebhookRepository: signing secrets, the delivery outbox (written by migration 0014's trigger), attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from backend.db.pool import Executor
from backend.domain.records import JOB_COLUMNS
from backend.domain.webhooks import AttemptEnd

GET_SECRET = "SELECT sealed, previous_sealed, rotated_at FROM webhook_secrets WHERE key_id = $1"
# Made on first use: of two concurrent first uses, one inserts and both read the winner's.
CREATE_SECRET = "INSERT INTO webhook_secrets (key_id, sealed) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"
# The secret being replaced is kept as the previous one (a second rotation drops the one before it).
ROTATE_SECRET = """
    INSERT INTO webhook_secrets (key_id, sealed) VALUES ($1, $2)
    ON CONFLICT (key_id) DO UPDATE SET sealed = EXCLUDED.sealed, created_at = now(),
        previous_sealed = webhook_secrets.sealed, rotated_at = now()
    RETURNING rotated_at
"""
# Claim due deliveries: SKIP LOCKED so that workers share them; the claim counts the attempt and moves
# next_attempt_at past the attempt's end (the lease), so a sender killed mid-POST leaves the delivery to
# whichever worker finds it due again. `attempts` fences the writes that follow. Each comes with its job
# (the event's `data`) in the same round trip.
CLAIM = f"""
    WITH due AS (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
               next_attempt_at = now() + make_interval(secs => $2)
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.job_id, d.event_type, d.occurred_at, d.attempts
    )
    SELECT c.id AS delivery_id, c.event_type, c.occurred_at, c.attempts AS delivery_attempts,
           {", ".join(f"j.{c}" for c in JOB_COLUMNS)}
    FROM claimed c JOIN jobs j ON j.id = c.job_id
"""
# Attempts' ends in one statement: their log rows, then each delivery delivered, or due again after its
# back-off, or given up once that would pass give_up_at; each fenced by the attempt that claimed it.
FINISH = """
    WITH e AS (
        SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::text[], $6::int[],
                             $7::bool[], $8::float8[])
            AS e(id, attempts, at, status_code, error, ms, delivered, retry_in)
    ), logged AS (
        INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, error, duration_ms)
        SELECT id, at, status_code, error, ms FROM e
    )
    UPDATE webhook_deliveries d SET
        status = CASE WHEN e.delivered THEN 'delivered'
                      WHEN now() + make_interval(secs => e.retry_in) > d.give_up_at THEN 'failed'
                      ELSE 'pending' END,
        delivered_at = CASE WHEN e.delivered THEN now() END,
        next_attempt_at = CASE WHEN e.delivered THEN d.next_attempt_at
                               ELSE now() + make_interval(secs => e.retry_in) END
    FROM e WHERE d.id = e.id AND d.attempts = e.attempts AND d.status = 'pending'
"""
OF_JOB = "SELECT * FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, id"
ATTEMPTS_OF = "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY id"
# Redeliver the job's latest event: due now, with 24 h of retries again; the same id (the same message).
REDELIVER = """
    UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), delivered_at = NULL,
           give_up_at = now() + interval '24 hours'
    WHERE id = (SELECT id FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1)
    RETURNING id
"""


class WebhookRepository:
    """SQL for webhooks."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def secret_row(self, key_id: uuid.UUID) -> asyncpg.Record | None:
        """The key's sealed signing secret, and the one before the last rotation, if it has one."""
        row: asyncpg.Record | None = await self.db.fetchrow(GET_SECRET, key_id)
        return row

    async def create_secret(self, key_id: uuid.UUID, sealed: bytes) -> None:
        """Store a first secret unless the key has one already."""
        await self.db.execute(CREATE_SECRET, key_id, sealed)

    async def replace_secret(self, key_id: uuid.UUID, sealed: bytes) -> datetime | None:
        """Store a new secret in place of the key's old one (kept as the previous); when that happened,
        None if the key had no secret yet."""
        rotated_at: datetime | None = await self.db.fetchval(ROTATE_SECRET, key_id, sealed)
        return rotated_at

    async def claim_due(self, limit: int, lease_s: float) -> list[asyncpg.Record]:
        """Up to `limit` due deliveries, claimed for one attempt each, with their jobs' columns."""
        return list(await self.db.fetch(CLAIM, limit, float(lease_s)))

    async def finish(self, ends: Sequence[AttemptEnd]) -> list[None]:
        """Record POSTs and what they mean for their deliveries, in one statement."""
        columns = (
            [e.delivery_id for e in ends],
            [e.attempts for e in ends],
            [e.at for e in ends],
            [e.status_code for e in ends],
            [e.error for e in ends],
            [e.duration_ms for e in ends],
            [e.delivered for e in ends],
            [float(e.retry_in_s) for e in ends],
        )
        await self.db.execute(FINISH, *columns)
        return [None] * len(ends)

    async def of_job(self, job_id: uuid.UUID) -> list[asyncpg.Record]:
        """The job's deliveries, oldest first."""
        return list(await self.db.fetch(OF_JOB, job_id))

    async def attempts_of(self, delivery_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """The attempts of these deliveries, in order."""
        return list(await self.db.fetch(ATTEMPTS_OF, list(delivery_ids)))

    async def redeliver(self, job_id: uuid.UUID) -> uuid.UUID | None:
        """Make the job's latest delivery due now; None if the job has none."""
        delivery_id: uuid.UUID | None = await self.db.fetchval(REDELIVER, job_id)
        return delivery_id
