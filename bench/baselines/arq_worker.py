"""A raw arq worker with the same no-op, started as `python -m bench.baselines.arq_worker MODE URL QUEUE`.

`default` is arq's own defaults; `tuned` copies our worker's tuning from `worker.settings.worker_kwargs`,
so the baseline follows whatever the platform's worker is set to.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker

# Keys of worker_kwargs that wire up the platform rather than tune arq.
PLATFORM_WIRING = {
    "functions",
    "cron_jobs",
    "on_startup",
    "on_shutdown",
    "redis_settings",
    "queue_name",
    # Our JSON message format: raw arq's enqueue_job writes pickle, which its default deserializer reads.
    "job_serializer",
    "job_deserializer",
}


async def noop(ctx: dict[str, Any], counter: str) -> None:
    """The no-op, plus one INCR so the bench can tell when all are done without scanning Redis."""
    await ctx["redis"].incr(counter)


async def probe(ctx: dict[str, Any], starts: str) -> None:
    """Record when this job started (for enqueue-to-start latency)."""
    started = time.time()
    await ctx["redis"].hset(starts, ctx["job_id"], repr(started))


def tuned_kwargs(redis_url: str) -> dict[str, Any]:
    """Our worker's arq tuning (max_jobs, poll_delay, keep_result, ...), from its own settings code."""
    from backend.core.config import Settings
    from worker.settings import worker_kwargs

    settings = Settings(_env_file=None, redis_url=redis_url, database_url="postgresql://unused/unused")
    return {k: v for k, v in worker_kwargs(settings).items() if k not in PLATFORM_WIRING}


def main(argv: list[str]) -> None:
    mode, redis_url, queue = argv
    tuning = tuned_kwargs(redis_url) if mode == "tuned" else {}
    Worker(
        functions=[noop, probe], redis_settings=RedisSettings.from_dsn(redis_url), queue_name=queue, **tuning
    ).run()


if __name__ == "__main__":
    main(sys.argv[1:])
