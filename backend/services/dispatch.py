"""Delivery to workers through arq. PostgreSQL is the truth; a failed enqueue is repaired by reconcile."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms
from arq.constants import job_key_prefix as JOB_KEY_PREFIX
from arq.constants import result_key_prefix as RESULT_KEY_PREFIX
from arq.jobs import serialize_job

log = logging.getLogger(__name__)

RUN_JOB = "run_job"

# The same keys arq's `enqueue_job` writes, in one atomic round trip instead of WATCH/EXISTS/MULTI/EXEC:
# the job key (the pickled message, with arq's expiry) and the queue entry, unless the delivery exists.
ENQUEUE_LUA = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


def delivery_id(job_id: uuid.UUID, attempts: int) -> str:
    """The arq job id for the next run of a job: unique per attempt, so a retry never collides."""
    return f"{job_id}:{attempts}"


class Dispatcher:
    """Pushes 'run this job' messages to Redis; never raises (callers have already committed)."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self._enqueue_script = redis.register_script(ENQUEUE_LUA)

    async def enqueue(self, job_id: uuid.UUID, attempts: int, scheduled_at: datetime | None = None) -> bool:
        """Enqueue one delivery; False if Redis failed (reconcile will retry) or it is already queued."""
        now_ms = int(time.time() * 1000)
        run_at_ms = max(now_ms, int(scheduled_at.timestamp() * 1000)) if scheduled_at else now_ms
        arq_id = delivery_id(job_id, attempts)
        message = serialize_job(RUN_JOB, (str(job_id),), {}, None, now_ms)
        expires_ms = run_at_ms - now_ms + expires_extra_ms
        try:
            added = await self._enqueue_script(
                keys=[JOB_KEY_PREFIX + arq_id, RESULT_KEY_PREFIX + arq_id, self.queue_name],
                args=[message, expires_ms, run_at_ms, arq_id],
            )
        except Exception as exc:  # any Redis failure: the row is safe, reconcile re-enqueues it
            log.warning("enqueue failed", extra={"job_id": str(job_id), "error": type(exc).__name__})
            return False
        return bool(added)

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
