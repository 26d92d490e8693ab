"""The arq worker: functions, cron jobs, start-up and shut-down, tuned for throughput."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings, create_pool
from arq.worker import Worker

from backend.core.config import Settings, get_settings
from backend.db.session import make_engine, make_raw_pool, make_sessionmaker
from backend.services.dispatch import RUN_JOB, Dispatcher
from backend.services.storage import LocalStorage
from worker import cron as cron_tasks
from worker.runtime import Runtime
from worker.tasks import MAX_TIMEOUT_S

log = logging.getLogger(__name__)

ARQ_TIMEOUT_MARGIN_S = 60
CRON_CONNECTIONS = 3  # reconcile and purge hold a connection each (purge two) besides the jobs
HEALTH_CHECK_INTERVAL_S = 5


async def run_job(ctx: dict[str, Any], job_id: str) -> None:
    """The single arq function: run one delivery of a platform job."""
    runtime: Runtime = ctx["runtime"]
    await runtime.run(uuid.UUID(job_id))


async def reconcile_job(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: put back what Redis lost, recover what dead workers held."""
    report = await cron_tasks.reconcile(ctx["runtime"])
    return report.__dict__


async def purge_job(ctx: dict[str, Any]) -> dict[str, Any]:
    """Cron: delete old jobs, files and idempotency keys."""
    report = await cron_tasks.purge(ctx["runtime"])
    return report.__dict__


def worker_id() -> str:
    """A name for this process, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def make_startup(settings: Settings) -> Any:
    async def startup(ctx: dict[str, Any]) -> None:
        url = settings.require_database_url()
        # Per-run statements go through the raw pool; SQLAlchemy serves cron and export handlers.
        engine = make_engine(url, pool_size=max(CRON_CONNECTIONS + 2, settings.worker_concurrency // 4))
        pool = await make_raw_pool(url, settings.worker_concurrency + 1)
        ctx["engine"], ctx["pool"] = engine, pool
        ctx["runtime"] = Runtime(
            settings=settings,
            sessions=make_sessionmaker(engine),
            storage=LocalStorage(settings.resolved_results_dir),
            dispatcher=Dispatcher(ctx["redis"], settings.queue_name),
            worker_id=worker_id(),
            pool=pool,
        )
        log.info("worker ready", extra={"worker_id": ctx["runtime"].worker_id})

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    """Release the database pools."""
    if (pool := ctx.get("pool")) is not None:
        await pool.close()
    if (engine := ctx.get("engine")) is not None:
        await engine.dispose()


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    """Everything `arq.Worker` needs, from our settings."""
    every = settings.reconcile_every_seconds
    # arq's cron job ids (`cron:<name>:<time>`) and their in-progress keys are global in Redis, not per
    # queue: two deployments sharing a Redis under different queue names would otherwise take each
    # other's ticks, and one of them would never reconcile.
    return {
        "functions": [
            func(run_job, name=RUN_JOB, timeout=MAX_TIMEOUT_S + ARQ_TIMEOUT_MARGIN_S, max_tries=1000)
        ],
        "cron_jobs": [
            cron(
                reconcile_job,
                name=f"reconcile:{settings.queue_name}",
                second=set(range(0, 60, every)),
                run_at_startup=True,
                timeout=60,
            ),
            cron(
                purge_job,
                name=f"purge:{settings.queue_name}",
                minute=set(range(0, 60, settings.purge_every_minutes)),
                second=7,
                timeout=3600,
            ),
        ],
        "on_startup": make_startup(settings),
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.require_redis_url()),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.poll_delay_seconds,
        # Our own retry policy decides; arq must neither keep results (they would block re-enqueue
        # under the same id) nor retry on its own.
        "keep_result": 0,
        "retry_jobs": False,
        "job_completion_wait": settings.shutdown_grace_seconds,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "handle_signals": True,
    }


@asynccontextmanager
async def standalone_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A Runtime outside an arq worker (for `jobplatform purge` and tests)."""
    engine = make_engine(settings.require_database_url(), pool_size=4)
    pool = await make_raw_pool(settings.require_database_url(), 2)
    redis = await create_pool(RedisSettings.from_dsn(settings.require_redis_url()))
    try:
        yield Runtime(
            settings=settings,
            sessions=make_sessionmaker(engine),
            storage=LocalStorage(settings.resolved_results_dir),
            dispatcher=Dispatcher(redis, settings.queue_name),
            worker_id=worker_id(),
            pool=pool,
        )
    finally:
        await redis.aclose()
        await pool.close()
        await engine.dispose()


def run_worker(settings: Settings | None = None) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    settings = settings or get_settings()
    worker = Worker(**worker_kwargs(settings))
    # arq marks a picked-up delivery "in progress" for the longest function timeout + 10 s (an hour
    # here), so a worker killed between pick-up and claim would strand the delivery that long. Our
    # lease protects a claimed job instead, so the marker only has to cover pick-up → claim: after it
    # lapses another worker re-picks the delivery, and the claim makes that a no-op if the job runs.
    worker.in_progress_timeout_s = delivery_lock_seconds(settings)
    worker.run()


def delivery_lock_seconds(settings: Settings) -> float:
    """How long arq's in-progress marker of a delivery lives."""
    return max(2 * settings.lease_seconds, 5.0)


class WorkerSettings:
    """For the arq CLI: `arq worker.settings.WorkerSettings` (same environment as `jobplatform worker`)."""

    locals().update(worker_kwargs(get_settings()) if get_settings().redis_url else {})
