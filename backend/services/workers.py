"""The live worker registry: each worker process announces itself every heartbeat and leaves on shutdown;
one that dies drops out of the list within a lease, and reconcile forgets it."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator

from backend.core.periodic import repeating
from backend.domain.records import WorkerRecord
from backend.repo.workers import WorkerRepository
from backend.resources import Resources

FORGET_AFTER_S = 3600  # a killed worker's row is deleted after this; it left the live list long before


@contextlib.asynccontextmanager
async def registered(res: Resources, worker_id: str, every_s: float) -> AsyncIterator[None]:
    """Keep this worker in the registry while the block runs; unregister it when the block ends."""
    repo = WorkerRepository(res.pool)
    host, pid, queue_name = socket.gethostname(), os.getpid(), res.settings.queue_name
    try:
        async with repeating(
            "worker registry beat", lambda: repo.beat(worker_id, host, pid, queue_name), every_s
        ):
            yield
    finally:
        with contextlib.suppress(Exception):  # a worker that cannot unregister drops out within a lease
            await repo.remove(worker_id)


async def live_workers(res: Resources) -> list[WorkerRecord]:
    """The workers seen within one lease."""
    return await WorkerRepository(res.pool).live(res.settings.queue_name, res.settings.lease_seconds)


async def forget_dead_workers(res: Resources) -> int:
    """Delete registry rows of workers gone for long (reconcile calls this)."""
    return await WorkerRepository(res.pool).forget(FORGET_AFTER_S)
