"""Fixtures of the integration tests that drive the queue by hand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from backend.adapters.queue import Queue, connect


@pytest.fixture
async def queue(servers: tuple[str, str]) -> AsyncIterator[Queue]:
    """A queue of its own on the session's Valkey (no workers: the test takes deliveries itself)."""
    redis = await connect(servers[1])
    q = Queue(redis, f"arq:own-{uuid.uuid4().hex[:8]}", horizon_s=3600, lease_s=15)
    try:
        yield q
    finally:
        await redis.delete(q.name, q.delayed, q.delayed_meta, q.finish_tags, q.virtual_time, *q.wake_keys)
        await redis.aclose()
