"""RATE_LIMIT: per API key, counted in Redis, 429 with Retry-After, never stored as an idempotent reply."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from backend.adapters.ratelimit import RateLimit
from backend.core.config import Settings

BODY = {"type": "sleep", "payload": {"seconds": 0}}


def test_rate_limit_parses_and_rejects_nonsense() -> None:
    assert RateLimit.parse("100/minute") == RateLimit(100, 60)
    assert RateLimit.parse("5/second") == RateLimit(5, 1)
    for bad in ("100", "0/minute", "x/minute", "10/day"):
        with pytest.raises(ValueError, match="RATE_LIMIT"):
            RateLimit.parse(bad)
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        Settings(rate_limit="10/fortnight")


async def test_over_the_limit_is_429_with_retry_after_per_key(isolated: Any) -> None:
    async with (
        isolated(workers=0, rate_limit="3/hour") as stack,
        await stack.client() as client,
        await stack.client() as other,
    ):
        for _ in range(3):
            assert (await client.post("/jobs", json=BODY)).status_code == 201
        limited = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "after-429"})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 3600
        assert limited.json() == {"detail": "Rate limit exceeded for this API key"}
        assert (await client.get("/jobs")).status_code == 429  # every authenticated request counts
        assert (await other.post("/jobs", json=BODY)).status_code == 201  # another key has its own budget
        assert stack.app_client is not None
        assert (await stack.app_client.get("/health")).status_code == 200  # public routes are not limited
        listed = (await other.get("/jobs")).json()["items"]
        assert len(listed) == 1


async def test_a_429_is_not_stored_for_the_idempotency_key(isolated: Any) -> None:
    async with isolated(workers=0, rate_limit="1/second") as stack, await stack.client() as client:
        await asyncio.sleep(1 - time.time() % 1 + 0.05)  # start at the beginning of a window
        assert (await client.post("/jobs", json=BODY)).status_code == 201
        limited = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "k"})
        assert limited.status_code == 429
        await asyncio.sleep(float(limited.headers["retry-after"]))
        fresh = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "k"})
        assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers


async def test_a_keys_own_limit_overrides_rate_limit(isolated: Any) -> None:
    async with isolated(workers=0, rate_limit="2/hour") as stack:
        generous = await stack.new_key("generous", rate_limit="5/hour")
        async with await stack.client(generous) as client, await stack.client() as default:
            assert [(await client.get("/jobs")).status_code for _ in range(6)] == [200] * 5 + [429]
            assert [(await default.get("/jobs")).status_code for _ in range(3)] == [200, 200, 429]
