"""AUTH_FAILURES_PER_MINUTE: failed authentications are counted per client address, and a throttled
address gets 429 with Retry-After before its keys are looked up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from backend.core.config import Settings
from tests.utils import db
from tests.utils.stack import Stack

LIMIT = 5


def client_from(stack: Stack, address: str, key: str | None = None) -> httpx.AsyncClient:
    """A client of the stack's app whose requests come from `address`."""
    assert stack.app_client is not None
    app = stack.app_client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    headers = {"X-API-Key": key} if key else {}
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


async def start_of_a_window() -> None:
    """The counter is a fixed one-minute window: keep a test's requests inside one."""
    if time.time() % 60 > 50:
        await asyncio.sleep(60 - time.time() % 60 + 0.05)


async def statuses(client: httpx.AsyncClient, n: int, key: str | None) -> list[int]:
    headers = {"X-API-Key": key} if key else {}
    return [(await client.get("/jobs", headers=headers)).status_code for _ in range(n)]


def test_the_default_is_30_failures_a_minute() -> None:
    assert Settings().auth_failures_per_minute == 30


async def test_bad_keys_are_throttled_per_address_without_a_lookup(isolated: Any) -> None:
    async with isolated(workers=0, auth_failures_per_minute=LIMIT, auth_cache_seconds=60) as stack:
        good, fresh = await stack.new_key(), await stack.new_key()
        async with client_from(stack, "10.0.0.1") as attacker, client_from(stack, "10.0.0.2") as neighbour:
            await start_of_a_window()
            assert await statuses(attacker, 1, good) == [200]  # now in the authenticator's cache
            assert await statuses(attacker, LIMIT, "jp_wrong") == [401] * LIMIT
            throttled = await attacker.get("/jobs", headers={"X-API-Key": "jp_wrong"})
            assert throttled.status_code == 429
            assert 1 <= int(throttled.headers["retry-after"]) <= 60
            assert throttled.json() == {
                "detail": "Too many failed authentications from this address; retry later"
            }

            # With the keys table out of reach, a lookup would be a 500: throttled requests make none.
            await db.execute(stack.settings, "ALTER TABLE api_keys RENAME TO api_keys_away")
            try:
                assert set(await statuses(attacker, 50, "jp_wrong")) == {429}
                assert await statuses(attacker, 1, good) == [
                    200
                ]  # a cached key costs no lookup: still served
                assert await statuses(neighbour, 1, "jp_wrong") == [500]  # the probe works: this one looked
            finally:
                await db.execute(stack.settings, "ALTER TABLE api_keys_away RENAME TO api_keys")

            assert await statuses(neighbour, 1, "jp_wrong") == [401]  # another address has its own budget
            assert await statuses(attacker, 1, fresh) == [429]  # a key not yet verified waits for the window


async def test_missing_keys_are_not_counted_and_zero_turns_it_off(isolated: Any) -> None:
    async with (
        isolated(workers=0, auth_failures_per_minute=LIMIT) as stack,
        client_from(stack, "10.0.0.3") as anonymous,
    ):
        await start_of_a_window()
        assert await statuses(anonymous, 3 * LIMIT, None) == [401] * 3 * LIMIT  # no key, no lookup
        assert await statuses(anonymous, 1, "jp_wrong") == [401]
    async with (
        isolated(workers=0, auth_failures_per_minute=0) as stack,
        client_from(stack, "10.0.0.4") as unlimited,
    ):
        assert await statuses(unlimited, 3 * LIMIT, "jp_wrong") == [401] * 3 * LIMIT


async def test_the_throttle_fails_open_without_redis() -> None:
    from redis.asyncio import Redis

    from backend.adapters.ratelimit import FailureThrottle, RateLimit
    from backend.core.embedded import free_port

    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=1)
    try:
        throttle = FailureThrottle(redis, RateLimit(1, 60), "test:authfail")
        await throttle.record("10.0.0.5")
        assert await throttle.retry_after("10.0.0.5") is None
    finally:
        await redis.aclose()
