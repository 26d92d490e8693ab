"""RunRepository: the worker's per-run SQL (claim, heartbeat, fenced outcomes) on a raw asyncpg connection
(jsonb in and out as Python objects: see `make_raw_pool`).

These few fixed statements run for every job, and SQLAlchemy's per-statement overhead (pool checkout,
compilation-cache lookup, result processing: about 0.3 ms each, measured) was the largest cost of a short
job. asyncpg prepares and caches them per connection. Everything else stays in `JobRepository`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one run of a job: the token fences every later write."""

    job_id: uuid.UUID
    token: uuid.UUID
    attempt: int
    max_attempts: int
    type: str
    payload: dict[str, Any]
    owner_id: uuid.UUID


CLAIM = """
    WITH claimed AS (
        UPDATE jobs SET status = 'running', attempts = attempts + 1, claim_token = $2,
               worker_id = $3, lease_expires_at = now() + make_interval(secs => $4),
               started_at = coalesce(started_at, now()), error = NULL, progress = 0, updated_at = now()
        WHERE id = $1 AND status IN ('pending', 'retrying') AND scheduled_at <= now()
              AND NOT cancel_requested
        RETURNING id, attempts, max_attempts, type, payload, owner_id
    ), run AS (
        INSERT INTO job_runs (job_id, attempt, claim_token, worker_id)
        SELECT id, attempts, $2, $3 FROM claimed
    )
    SELECT * FROM claimed
"""

HEARTBEAT = """
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3), progress = $4, updated_at = now()
    WHERE id = $1 AND claim_token = $2 AND status = 'running'
    RETURNING cancel_requested
"""


def fenced(set_clause: str) -> str:
    """An update of a running job that only its current claim may make; closes the run row too.

    $1 job id, $2 claim token, $3 run outcome; further parameters belong to `set_clause`.
    """
    return f"""
        WITH j AS (
            UPDATE jobs SET {set_clause}, claim_token = NULL, worker_id = NULL, lease_expires_at = NULL,
                   updated_at = now()
            WHERE id = $1 AND claim_token = $2 AND status = 'running'
            RETURNING id, status, attempts, scheduled_at
        ), run AS (
            UPDATE job_runs SET ended_at = now(), outcome = $3
            WHERE claim_token = $2 AND EXISTS (SELECT 1 FROM j)
        )
        SELECT * FROM j
    """


COMPLETE = fenced(
    "status = 'completed', progress = 1, result = $4::jsonb, result_file = $5::jsonb, finished_at = now()"
)
RETRY = fenced("status = 'retrying', error = $4, scheduled_at = now() + make_interval(secs => $5)")
FAIL = fenced("status = 'failed', error = $4, finished_at = now()")
CANCELLED = fenced("status = 'cancelled', error = 'cancelled by request', finished_at = now()")
HAND_BACK = fenced("status = 'retrying', attempts = attempts - 1, scheduled_at = now()")


class RunRepository:
    """Per-run SQL, bound to one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, job_id: uuid.UUID, worker_id: str, lease_s: float) -> Claim | None:
        """Take a waiting, due job for one run; None if another delivery or worker got it first."""
        token = uuid.uuid4()
        row = await self.conn.fetchrow(CLAIM, job_id, token, worker_id, float(lease_s))
        if row is None:
            return None
        attempt, max_attempts = row["attempts"], row["max_attempts"]
        return Claim(row["id"], token, attempt, max_attempts, row["type"], row["payload"], row["owner_id"])

    async def heartbeat(self, claim: Claim, lease_s: float, progress: float) -> bool | None:
        """Renew the lease and store progress; returns cancel_requested, or None if the claim is lost."""
        row = await self.conn.fetchrow(HEARTBEAT, claim.job_id, claim.token, float(lease_s), float(progress))
        return None if row is None else bool(row["cancel_requested"])

    async def _finish(self, sql: str, claim: Claim, outcome: str, *params: Any) -> asyncpg.Record | None:
        args = (claim.job_id, claim.token, outcome, *params)
        row: asyncpg.Record | None = await self.conn.fetchrow(sql, *args)
        return row

    async def complete(self, claim: Claim, result: Any, result_file: dict[str, Any] | None) -> bool:
        """Record success; False if the claim was lost meanwhile."""
        return await self._finish(COMPLETE, claim, "completed", result, result_file) is not None

    async def schedule_retry(self, claim: Claim, error: str, delay_s: float) -> asyncpg.Record | None:
        """Record a failed attempt that will be retried after `delay_s`."""
        return await self._finish(RETRY, claim, "retry", error, float(delay_s))

    async def fail(self, claim: Claim, error: str) -> bool:
        """Record the final failure."""
        return await self._finish(FAIL, claim, "failed", error) is not None

    async def mark_cancelled(self, claim: Claim) -> bool:
        """Record that a running job was aborted on request."""
        return await self._finish(CANCELLED, claim, "cancelled") is not None

    async def hand_back(self, claim: Claim) -> asyncpg.Record | None:
        """Return a running job to the queue without spending an attempt (shutdown)."""
        return await self._finish(HAND_BACK, claim, "handed_back")
