"""The worker process: its job function, background duties, start-up and shut-down (run by the queue
adapter)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import anyio

from backend.adapters.queue import WorkerSetup, run_worker_process
from backend.adapters.queue import worker_kwargs as queue_worker_kwargs
from backend.core.config import Settings, get_settings
from backend.core.metrics import process_exiting
from backend.core.periodic import repeating
from backend.core.tracing import tracer_for
from backend.domain.job_types import MAX_TIMEOUT_S
from backend.resources import Resources, open_resources
from backend.services.purge import purge
from backend.services.reconcile import reconcile
from backend.services.schedules import firing
from backend.services.stats import refresh_stats
from backend.services.webhooks import sending_webhooks
from backend.services.workers import registered
from worker.runtime import Runtime

log = logging.getLogger(__name__)

# reconcile, purge (two), stats, the registry beat, schedule firing and webhooks, besides the jobs
CRON_CONNECTIONS = 7
PROMOTE_EVERY_S = 0.1  # how late a scheduled job or a retry may start, at most (one Redis call when idle)


async def run_job(ctx: dict[str, Any], job_id: str) -> None:
    """Run one delivery of a platform job."""
    runtime: Runtime = ctx["runtime"]
    await runtime.run(uuid.UUID(job_id), delivery=ctx["job_id"])


def duties(res: Resources, settings: Settings) -> list[AbstractAsyncContextManager[None]]:
    """The background duties of every worker, as loops of its own (not queue messages, which a backlog
    ordered by fair share and priority would keep waiting). Each takes an advisory lock (or SKIP LOCKED),
    so however many workers run them, one run happens at a time."""
    every = settings.reconcile_every_seconds
    return [
        # Deliveries that came due (scheduled jobs, retries after back-off) join the queue in order.
        repeating("promote due", res.queue.promote_due, PROMOTE_EVERY_S, jitter=0.2),
        # Lease recovery first (every worker, no lock: SKIP LOCKED), then the locked re-enqueue pass.
        repeating("reconcile", lambda: reconcile(res), every, jitter=0.2),
        repeating("stats", lambda: refresh_stats(res.pool), settings.stats_interval_seconds, jitter=0.2),
        repeating("purge", lambda: purge(res), settings.purge_every_minutes * 60, 0.2, wait_first=True),
        # Webhook deliveries (the outbox rows job ends write), claimed with SKIP LOCKED.
        sending_webhooks(settings, res.pool),
    ]


def worker_id() -> str:
    """A name for this process, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def make_startup(settings: Settings) -> Any:
    async def startup(ctx: dict[str, Any]) -> None:
        stack = ctx["exit_stack"] = AsyncExitStack()
        pool_size = settings.worker_concurrency + CRON_CONNECTIONS
        tracer = tracer_for(settings, "jobplatform-worker")
        if tracer is not None:  # flushed last, after every run and duty has ended
            stack.push_async_callback(anyio.to_thread.run_sync, tracer.shutdown)
        res = await stack.enter_async_context(open_resources(settings, pool_size, redis=ctx["redis"]))
        runtime = ctx["runtime"] = Runtime(res, worker_id(), tracer)
        await stack.enter_async_context(registered(res, runtime.worker_id, runtime.heartbeat_interval))
        for duty in duties(res, settings):
            await stack.enter_async_context(duty)
        await stack.enter_async_context(firing(res, settings.schedule_poll_seconds))
        log.info("worker ready", extra={"worker_id": runtime.worker_id})

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    """Release the database pool, flush the spans."""
    if (stack := ctx.get("exit_stack")) is not None:
        await stack.aclose()
    process_exiting()


def setup(settings: Settings) -> WorkerSetup:
    """This worker's job function and duties, for the queue adapter."""
    return WorkerSetup(
        queue_name=settings.queue_name,
        redis_url=settings.require_redis_url(),
        run_job=run_job,
        max_job_seconds=max([MAX_TIMEOUT_S, *settings.task_timeouts.values()]),
        on_startup=make_startup(settings),
        on_shutdown=shutdown,
        concurrency=settings.worker_concurrency,
        poll_delay_s=settings.poll_delay_seconds,
        shutdown_grace_s=settings.shutdown_grace_seconds,
    )


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    """The queue library's worker arguments for these settings (the bench copies their tuning)."""
    return queue_worker_kwargs(setup(settings))


def run_worker(settings: Settings | None = None) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    settings = settings or get_settings()
    run_worker_process(setup(settings), settings.lease_seconds)


class WorkerSettings:
    """For the arq CLI: `arq worker.settings.WorkerSettings` (same environment as `jobplatform worker`)."""

    locals().update(worker_kwargs(get_settings()) if get_settings().redis_url else {})
