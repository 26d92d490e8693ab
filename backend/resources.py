"""The shared parts one process talks to, opened once: the database pool, the queue, result storage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from arq.connections import ArqRedis

from backend.adapters.queue import Queue, connect
from backend.adapters.storage import LocalStorage, Storage
from backend.core.config import Settings
from backend.db.pool import create_pool
from backend.domain.job_types import MAX_TIMEOUT_S
from backend.domain.retry import RetryPolicy
from backend.repo.deployment import DeploymentRepository

if TYPE_CHECKING:
    from backend.adapters.s3 import S3Options


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


def s3_options(settings: Settings) -> S3Options:
    """The S3 client's options from RESULTS_URL, S3_* and AWS_* settings."""
    from backend.adapters.s3 import S3Location, S3Options

    assert settings.results_url is not None
    secret, token = settings.aws_secret_access_key, settings.aws_session_token
    return S3Options(
        S3Location.parse(settings.results_url),
        endpoint_url=settings.s3_endpoint_url,
        region=settings.aws_region,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
        session_token=token.get_secret_value() if token else None,
        addressing_style=settings.s3_addressing_style,
        part_size=settings.s3_part_size_bytes,
        max_connections=settings.s3_max_connections,
        presign_seconds=settings.s3_presign_seconds if settings.s3_presigned_downloads else None,
    )


@asynccontextmanager
async def open_storage(settings: Settings, deployment_id: uuid.UUID) -> AsyncIterator[Storage]:
    """The results store RESULTS_URL names (S3, checked at once), else the local folder."""
    if settings.results_in_s3:
        from backend.adapters.s3 import open_s3_storage  # botocore takes a second to import: only when used

        async with open_s3_storage(s3_options(settings), deployment_id, settings.scratch_dir) as storage:
            # A scratch file older than the longest possible run belongs to no live run on this host.
            longest_run_s = max([MAX_TIMEOUT_S, *settings.task_timeouts.values()]) + settings.lease_seconds
            await storage.sweep_scratch(longest_run_s)
            yield storage
    else:
        yield LocalStorage(settings.resolved_results_dir, deployment_id)


@asynccontextmanager
async def open_resources(
    settings: Settings, pool_size: int, redis: ArqRedis | None = None
) -> AsyncIterator[Resources]:
    """Connect to PostgreSQL, Redis (or use the given pool, e.g. arq's) and the results store; close them."""
    own_redis = redis is None
    redis = redis or await connect(settings.require_redis_url())
    pool = await create_pool(settings.require_database_url(), pool_size)
    try:
        async with open_storage(settings, await DeploymentRepository(pool).id()) as storage:
            queue = Queue(redis, settings.queue_name, settings.queue_horizon_seconds, settings.lease_seconds)
            yield Resources(settings, pool, queue, storage)
    finally:
        await pool.close()
        if own_redis:
            await redis.aclose()
