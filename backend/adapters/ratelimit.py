"""Rate limits counted in Redis in fixed windows, shared by every API process.

`RateLimiter`: per API key; `RATE_LIMIT` is `N/second`, `N/minute` or `N/hour`; unset means no limit (and
no Redis round trip). `FailureThrottle`: failed authentications per client address
(`AUTH_FAILURES_PER_MINUTE`). If Redis is unreachable both fail open: requests must not stop because the
counter did.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

from redis.asyncio import Redis

log = logging.getLogger(__name__)

WINDOWS = {"second": 1, "minute": 60, "hour": 3600}

# INCR the window's counter; the first hit sets its expiry. Returns the count and the ms left.
HIT_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""
# Read the window's counter without counting. Returns the count and the ms left.
PEEK_LUA = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
return {n, redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True)
class RateLimit:
    """N requests per window."""

    limit: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`100/minute` → RateLimit(100, 60); ValueError otherwise."""
        count, _, unit = text.strip().partition("/")
        if unit not in WINDOWS or not count.isdigit() or int(count) < 1:
            raise ValueError(f"RATE_LIMIT must look like 100/minute (second, minute or hour), not {text!r}")
        return cls(int(count), WINDOWS[unit])


@lru_cache(maxsize=1024)
def parse_cached(text: str) -> RateLimit:
    """`RateLimit.parse`, remembered: a key's own limit is read on every request."""
    return RateLimit.parse(text)


class RateLimiter:
    """Counts requests per API key in Redis, against RATE_LIMIT or the key's own limit."""

    def __init__(self, redis: Redis, limit: RateLimit | None, prefix: str) -> None:
        self.limit = limit
        self.prefix = prefix
        self._hit = redis.register_script(HIT_LUA)

    async def retry_after(self, key_id: uuid.UUID, own: RateLimit | None = None) -> int | None:
        """None if this request is allowed; else seconds until the window resets.

        `own` (the key's rate limit) replaces the platform's; with neither, no Redis round trip.
        """
        limit = own or self.limit
        if limit is None:
            return None
        window = int(time.time()) // limit.window_s
        try:
            # The window's length is in the name: a key whose limit changes starts a fresh count.
            count, ttl_ms = await self._hit(
                keys=[f"{self.prefix}:{key_id}:{limit.window_s}:{window}"], args=[limit.window_s * 1000]
            )
        except Exception as exc:  # fail open: a broken counter must not stop submissions
            log.warning("rate limiter unavailable", extra={"error": type(exc).__name__})
            return None
        if int(count) <= limit.limit:
            return None
        return max(1, math.ceil(int(ttl_ms) / 1000))


class FailureThrottle:
    """Counts failures per client in Redis; a client with `limit` failures in a window waits for the next."""

    def __init__(self, redis: Redis, limit: RateLimit, prefix: str) -> None:
        self.limit = limit
        self.prefix = prefix
        self._hit = redis.register_script(HIT_LUA)
        self._peek = redis.register_script(PEEK_LUA)

    def _key(self, client: str) -> str:
        return f"{self.prefix}:{client}:{int(time.time()) // self.limit.window_s}"

    async def retry_after(self, client: str) -> int | None:
        """None while `client` may still try; else seconds until its window resets. Counts nothing."""
        try:
            count, ttl_ms = await self._peek(keys=[self._key(client)])
        except Exception as exc:  # fail open, as RateLimiter does
            log.warning("auth failure throttle unavailable", extra={"error": type(exc).__name__})
            return None
        if int(count) < self.limit.limit:
            return None
        return max(1, math.ceil(int(ttl_ms) / 1000))

    async def record(self, client: str) -> None:
        """Count one failure of `client`."""
        try:
            await self._hit(keys=[self._key(client)], args=[self.limit.window_s * 1000])
        except Exception as exc:
            log.warning("auth failure throttle unavailable", extra={"error": type(exc).__name__})
