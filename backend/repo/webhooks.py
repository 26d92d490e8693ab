"""WebhookRepository: signing secrets, the delivery outbox (written by migration 0014's trigger), attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from backend.db.pool import Executor

GET_SECRET = "SELECT sealed FROM webhook_secrets WHERE key_id = $1"
# Made on first use: of two concurrent first uses, one inserts and both read the winner's.
CREATE_SECRET = "INSERT INTO webhook_secrets (key_id, sealed) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"
ROTATE_SECRET = """
    INSERT INTO webhook_secrets (key_id, sealed) VALUES ($1, $2)
    ON CONFLICT (key_id) DO UPDATE SET sealed = EXCLUDED.sealed, created_at = now()
"""
# Claim due deliveries: SKIP LOCKED so that workers share them; the claim counts the attempt and moves
# next_attempt_at past the attempt's end (the lease), so a sender killed mid-POST leaves the delivery to
# whichever worker finds it due again. `attempts` fences the writes that follow.
CLAIM = """
    WITH due AS (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
           next_attempt_at = now() + make_interval(secs => $2)
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.job_id, d.owner_id, d.event_type, d.occurred_at, d.attempts, d.give_up_at,
              (SELECT webhook_url FROM jobs WHERE jobs.id = d.job_id) AS url
"""
LOG_ATTEMPT = """
    INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, error, duration_ms)
    VALUES ($1, $2, $3, $4, $5)
"""
DELIVERED = """
    UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now()
    WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
# After a failed attempt: again after the back-off, or give up once that would pass give_up_at.
FAILED = """
    UPDATE webhook_deliveries SET
        status = CASE WHEN now() + make_interval(secs => $3) > give_up_at THEN 'failed' ELSE 'pending' END,
        next_attempt_at = now() + make_interval(secs => $3)
    WHERE id = $1 AND attempts = $2 AND status = 'pending'
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

    async def sealed_secret(self, key_id: uuid.UUID) -> bytes | None:
        """The key's sealed signing secret, if it has one."""
        sealed: bytes | None = await self.db.fetchval(GET_SECRET, key_id)
        return sealed

    async def create_secret(self, key_id: uuid.UUID, sealed: bytes) -> None:
        """Store a first secret unless the key has one already."""
        await self.db.execute(CREATE_SECRET, key_id, sealed)

    async def replace_secret(self, key_id: uuid.UUID, sealed: bytes) -> None:
        """Store a new secret in place of the key's old one."""
        await self.db.execute(ROTATE_SECRET, key_id, sealed)

    async def claim_due(self, limit: int, lease_s: float) -> list[asyncpg.Record]:
        """Up to `limit` due deliveries, claimed for one attempt each."""
        return list(await self.db.fetch(CLAIM, limit, float(lease_s)))

    async def log_attempt(
        self, delivery_id: uuid.UUID, at: datetime, status_code: int | None, error: str | None, ms: int
    ) -> None:
        """Record one POST."""
        await self.db.execute(LOG_ATTEMPT, delivery_id, at, status_code, error, ms)

    async def delivered(self, delivery_id: uuid.UUID, attempts: int) -> None:
        """Mark the delivery done (fenced by the attempt that claimed it)."""
        await self.db.execute(DELIVERED, delivery_id, attempts)

    async def failed(self, delivery_id: uuid.UUID, attempts: int, retry_in_s: float) -> None:
        """Schedule the next attempt, or give up past the delivery's deadline."""
        await self.db.execute(FAILED, delivery_id, attempts, float(retry_in_s))

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
