"""Delivery to workers through arq. PostgreSQL is the truth; a failed enqueue is repaired by reconcile."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from arq.connections import ArqRedis
from arq.constants import job_key_prefix as JOB_KEY_PREFIX

log = logging.getLogger(__name__)

RUN_JOB = "run_job"


def delivery_id(job_id: uuid.UUID, attempts: int) -> str:
    """The arq job id for the next run of a job: unique per attempt, so a retry never collides."""
    return f"{job_id}:{attempts}"


class Dispatcher:
    """Pushes 'run this job' messages to Redis; never raises (callers have already committed)."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def enqueue(self, job_id: uuid.UUID, attempts: int, scheduled_at: datetime | None = None) -> bool:
        """Enqueue one delivery; False if Redis refused or failed (reconcile will retry)."""
        defer = scheduled_at if scheduled_at and scheduled_at > datetime.now(UTC) else None
        try:
            await self.redis.enqueue_job(
                RUN_JOB,
                str(job_id),
                _job_id=delivery_id(job_id, attempts),
                _queue_name=self.queue_name,
                _defer_until=defer,
            )
        except Exception as exc:  # any Redis failure: the row is safe, reconcile re-enqueues it
            log.warning("enqueue failed", extra={"job_id": str(job_id), "error": type(exc).__name__})
            return False
        return True

    async def discard(self, job_id: uuid.UUID, attempts: int) -> None:
        """Drop a queued delivery that is no longer wanted (the job was cancelled before it ran)."""
        arq_id = delivery_id(job_id, attempts)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.queue_name, arq_id)
                pipe.delete(JOB_KEY_PREFIX + arq_id)
                await pipe.execute()
        except Exception as exc:  # harmless if it stays: the claim refuses a cancelled job
            log.warning("discard failed", extra={"job_id": str(job_id), "error": type(exc).__name__})
