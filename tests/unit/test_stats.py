"""Stats windows and the API's one-second view cache (pure logic)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime

import pytest

from backend.domain.stats import StatsWindow
from backend.services.stats import ViewCache


@pytest.mark.parametrize(
    ("window", "seconds", "count"), [("1h", 60, 60), ("24h", 900, 96), ("7d", 3600, 168)]
)
def test_a_window_ends_with_the_bucket_holding_now(window: str, seconds: int, count: int) -> None:
    now = datetime(2026, 12, 1, 10, 37, 12, tzinfo=UTC)
    starts = StatsWindow(window).bucket_starts(now)
    assert len(starts) == count and StatsWindow(window).bucket_seconds == seconds
    assert starts[-1] <= now and starts[-1].timestamp() + seconds > now.timestamp()
    assert all(int(s.timestamp()) % seconds == 0 for s in starts)
    assert all((b - a).total_seconds() == seconds for a, b in itertools.pairwise(starts))


async def test_the_cache_shares_one_rendering_and_forgets_failures() -> None:
    cache, calls = ViewCache(ttl_s=60), []
    key = (uuid.uuid4(), StatsWindow.DAY, None)

    async def render() -> bytes:
        calls.append(1)
        await asyncio.sleep(0.01)
        return b"view"

    assert await asyncio.gather(*(cache.get(key, render) for _ in range(10))) == [b"view"] * 10
    assert len(calls) == 1

    async def broken() -> bytes:
        raise RuntimeError("database down")

    other = (None, StatsWindow.HOUR, "sleep")
    with pytest.raises(RuntimeError):
        await cache.get(other, broken)
    assert await cache.get(other, render) == b"view"  # a failure is not cached
    expired = ViewCache(ttl_s=0)
    await expired.get(key, render)
    await expired.get(key, render)
    assert len(calls) == 4
