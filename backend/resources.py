"""The shared parts one process talks to, opened once: the database pool, the queue, result storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis

from backend.adapters.queue import Queue, connect
from backend.adapters.storage import LocalStorage, Storage
from backend.core.config import Settings
from backend.db.pool import create_pool
from backend.domain.retry import RetryPolicy
from backend.repo.deployment import DeploymentRepository


@dataclass(frozen=True)
class Resources:
    """Settings plus the clients every use case needs."""

    settings: Settings
    pool: asyncpg.Pool
    queue: Queue
    storage: Storage

    @property
    def retry_policy(self) -> RetryPolicy:
        """Back-off between attempts, from the settings."""
        return RetryPolicy(self.settings.retry_base_seconds, self.settings.retry_cap_seconds)


@asynccontextmanager
async def open_resources(
    settings: Settings, pool_size: int, redis: ArqRedis | None = None
) -> AsyncIterator[Resources]:
    """Connect to PostgreSQL and Redis (or use the given Redis pool, e.g. arq's); close what was opened."""
    own_redis = redis is None
    redis = redis or await connect(settings.require_redis_url())
    pool = await create_pool(settings.require_database_url(), pool_size)
    try:
        storage = LocalStorage(settings.resolved_results_dir, await DeploymentRepository(pool).id())
        queue = Queue(redis, settings.queue_name, settings.queue_horizon_seconds, settings.lease_seconds)
        yield Resources(settings, pool, queue, storage)
    finally:
        await pool.close()
        if own_redis:
            await redis.aclose()
