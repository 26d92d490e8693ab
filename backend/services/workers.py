"""The live worker registry: each worker process announces itself every heartbeat and leaves on shutdown;
one that dies drops out of the list within a lease, and reconcile forgets it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

from backend.domain.records import WorkerRecord
from backend.repo.workers import WorkerRepository
from backend.resources import Resources

log = logging.getLogger(__name__)

FORGET_AFTER_S = 3600  # a killed worker's row is deleted after this; it left the live list long before


async def _beat_forever(repo: WorkerRepository, worker_id: str, queue_name: str, every_s: float) -> None:
    host, pid = socket.gethostname(), os.getpid()
    while True:
        try:
            await repo.beat(worker_id, host, pid, queue_name)
        except Exception as exc:  # the registry is for people; a missed beat only makes it stale
            log.warning("worker registry beat failed", extra={"error": type(exc).__name__})
        await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def registered(res: Resources, worker_id: str, every_s: float) -> AsyncIterator[None]:
    """Keep this worker in the registry while the block runs."""
    repo = WorkerRepository(res.pool)
    task = asyncio.create_task(_beat_forever(repo, worker_id, res.settings.queue_name, every_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await repo.remove(worker_id)


async def live_workers(res: Resources) -> list[WorkerRecord]:
    """The workers seen within one lease."""
    return await WorkerRepository(res.pool).live(res.settings.queue_name, res.settings.lease_seconds)


async def forget_dead_workers(res: Resources) -> int:
    """Delete registry rows of workers gone for long (reconcile calls this)."""
    return await WorkerRepository(res.pool).forget(FORGET_AFTER_S)
