"""The queue adapter: everything that knows arq and Redis lives here, and nowhere else.

PostgreSQL is the truth; Redis only carries "run this job" messages. A failed enqueue is repaired by
reconcile, so enqueue and discard never raise. The queue's wire format (arq's key prefixes, message
encoding, in-progress markers) is used only by this module; arq is pinned to the tested range.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq import cron, func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.worker import Worker

log = logging.getLogger(__name__)

RUN_JOB = "run_job"
# Queue messages are JSON, never pickle: whoever can write to Redis cannot make a worker run code.
SERIALIZER = "json"


def dump_message(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a queue message as JSON."""
    return json.dumps(data, separators=(",", ":")).encode()


def load_message(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`: only JSON objects are messages."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a queue message must be a JSON object")
    return data


TIMEOUT_MARGIN_S = 60
HEALTH_CHECK_INTERVAL_S = 5

# The same keys arq's `enqueue_job` writes, in one atomic round trip instead of WATCH/EXISTS/MULTI/EXEC:
# the job key (the message, with arq's expiry) and the queue entry, unless the delivery exists.
ENQUEUE_LUA = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


Delivery = tuple[uuid.UUID, int, datetime | None]  # job id, attempts so far, due time (None: now)


def delivery_id(job_id: uuid.UUID, attempts: int) -> str:
    """The arq job id for the next run of a job: unique per attempt, so a retry never collides."""
    return f"{job_id}:{attempts}"


def score_ms(run_at: datetime | None, now_ms: int) -> int:
    """Where a delivery sits in the queue: workers take the lowest score that is due.

    Today the due time in ms; priority and fair share will shift it here and only here.
    """
    return max(now_ms, int(run_at.timestamp() * 1000)) if run_at else now_ms


def in_progress_ttl_s(lease_seconds: float) -> float:
    """How long arq's in-progress marker of a picked-up delivery lives.

    arq would keep it for the longest function timeout + 10 s (an hour here), so a worker killed
    between pick-up and claim would strand the delivery that long. Our lease protects a claimed job
    instead, so the marker only has to cover pick-up → claim: after it lapses another worker re-picks
    the delivery, and the claim makes that a no-op if the job runs.
    """
    return max(2 * lease_seconds, 5.0)


async def connect(url: str) -> ArqRedis:
    """A Redis connection pool for the queue."""
    return await create_pool(RedisSettings.from_dsn(url))


class Queue:
    """Pushes, drops and inspects deliveries of one queue."""

    def __init__(self, redis: ArqRedis, name: str, horizon_s: float, lease_s: float) -> None:
        self.redis = redis
        self.name = name
        self.horizon_ms = int(horizon_s * 1000)
        self.in_progress_ms = int(in_progress_ttl_s(lease_s) * 1000)
        self._enqueue_script = redis.register_script(ENQUEUE_LUA)

    async def enqueue(self, job_id: uuid.UUID, attempts: int, run_at: datetime | None = None) -> bool:
        """Enqueue one delivery; False if Redis failed (reconcile will retry), it is already queued, or
        it is due beyond the horizon (reconcile enqueues it when it comes within the horizon).

        The horizon bounds what Redis holds: a job scheduled for the year 9999 costs a row, not a key
        that lives for millennia.
        """
        return await self.enqueue_many([(job_id, attempts, run_at)]) == 1

    async def enqueue_many(self, deliveries: Sequence[Delivery]) -> int:
        """Enqueue (job id, attempts, due time) deliveries in one round trip; returns how many were added."""
        now_ms = int(time.time() * 1000)
        calls = [call for d in deliveries if (call := self._enqueue_call(*d, now_ms)) is not None]
        if not calls:
            return 0
        try:
            if len(calls) == 1:  # the hot path: one EVALSHA, no pipeline
                added = [await self._enqueue_script(keys=calls[0][0], args=calls[0][1])]
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        await self._enqueue_script(keys=keys, args=args, client=pipe)
                    added = await pipe.execute()
        except Exception as exc:  # any Redis failure: the rows are safe, reconcile re-enqueues them
            log.warning("enqueue failed", extra={"deliveries": len(calls), "error": type(exc).__name__})
            return 0
        return sum(1 for a in added if a)

    def _enqueue_call(
        self, job_id: uuid.UUID, attempts: int, run_at: datetime | None, now_ms: int
    ) -> tuple[list[str], list[Any]] | None:
        score = score_ms(run_at, now_ms)
        if score - now_ms > self.horizon_ms:
            return None
        arq_id = delivery_id(job_id, attempts)
        message = serialize_job(RUN_JOB, (str(job_id),), {}, None, now_ms, serializer=dump_message)
        keys = [job_key_prefix + arq_id, result_key_prefix + arq_id, self.name]
        return keys, [message, score - now_ms + expires_extra_ms, score, arq_id]

    async def discard(self, deliveries: Sequence[tuple[uuid.UUID, int]]) -> None:
        """Drop queued deliveries (job id, attempts) that are no longer wanted (their jobs were cancelled)."""
        if not deliveries:
            return
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for job_id, attempts in deliveries:
                    arq_id = delivery_id(job_id, attempts)
                    pipe.zrem(self.name, arq_id)
                    pipe.delete(job_key_prefix + arq_id)
                await pipe.execute()
        except Exception as exc:  # harmless if they stay: the claim refuses a cancelled job
            log.warning("discard failed", extra={"deliveries": len(deliveries), "error": type(exc).__name__})

    async def held(self, deliveries: Sequence[tuple[uuid.UUID, int]]) -> list[bool]:
        """For each (job id, attempts): is that delivery queued or in progress in Redis?"""
        if not deliveries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, attempts in deliveries:
                arq_id = delivery_id(job_id, attempts)
                pipe.exists(job_key_prefix + arq_id, in_progress_key_prefix + arq_id)
            found = await pipe.execute()
        return [bool(n) for n in found]

    async def keep_in_progress(self, delivery: str) -> None:
        """Extend a running delivery's in-progress marker, so no worker picks it up again while it runs.

        arq leaves a running delivery in the queue; once its marker lapsed, a poll (even this
        process's own) would start it a second time, and arq's bookkeeping of the first run breaks.
        """
        try:
            await self.redis.pexpire(in_progress_key_prefix + delivery, self.in_progress_ms)
        except Exception as exc:  # the claim still makes a second pick-up a no-op
            log.warning(
                "in-progress refresh failed", extra={"delivery": delivery, "error": type(exc).__name__}
            )

    async def depth(self) -> int:
        """Deliveries in the queue (due or deferred)."""
        return int(await self.redis.zcard(self.name))

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self.redis.ping()


@dataclass(frozen=True)
class CronTask:
    """A periodic duty of the workers (one run at a time across them is the duty's own business)."""

    name: str
    coroutine: Callable[[dict[str, Any]], Awaitable[Any]]
    second: set[int] | int
    minute: set[int] | None = None
    run_at_startup: bool = False
    timeout_s: float = 60


@dataclass(frozen=True)
class WorkerSetup:
    """What a platform worker runs, independent of the queue library."""

    queue_name: str
    redis_url: str
    run_job: Callable[[dict[str, Any], str], Awaitable[None]]
    max_job_seconds: float
    crons: Sequence[CronTask]
    on_startup: Callable[[dict[str, Any]], Awaitable[None]]
    on_shutdown: Callable[[dict[str, Any]], Awaitable[None]]
    concurrency: int
    poll_delay_s: float
    shutdown_grace_s: int


def _cron(task: CronTask, queue_name: str) -> Any:
    # arq's cron job ids (`cron:<name>:<time>`) and their in-progress keys are global in Redis, not per
    # queue: two deployments sharing a Redis under different queue names would otherwise take each
    # other's ticks, and one of them would never reconcile.
    return cron(
        task.coroutine,
        name=f"{task.name}:{queue_name}",
        second=task.second,
        minute=task.minute,
        run_at_startup=task.run_at_startup,
        timeout=task.timeout_s,
    )


def worker_kwargs(setup: WorkerSetup) -> dict[str, Any]:
    """Everything `arq.Worker` needs, tuned for throughput."""
    timeout = setup.max_job_seconds + TIMEOUT_MARGIN_S
    return {
        "functions": [func(setup.run_job, name=RUN_JOB, timeout=timeout, max_tries=1000)],
        "cron_jobs": [_cron(task, setup.queue_name) for task in setup.crons],
        "on_startup": setup.on_startup,
        "on_shutdown": setup.on_shutdown,
        "redis_settings": RedisSettings.from_dsn(setup.redis_url),
        "queue_name": setup.queue_name,
        "max_jobs": setup.concurrency,
        "poll_delay": setup.poll_delay_s,
        # Our own retry policy decides; arq must neither keep results (they would block re-enqueue
        # under the same id) nor retry on its own.
        "keep_result": 0,
        "retry_jobs": False,
        "job_completion_wait": setup.shutdown_grace_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "handle_signals": True,
        "job_serializer": dump_message,
        "job_deserializer": load_message,
    }


def run_worker_process(setup: WorkerSetup, lease_seconds: float) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    worker = Worker(**worker_kwargs(setup))
    worker.in_progress_timeout_s = in_progress_ttl_s(lease_seconds)
    worker.run()
