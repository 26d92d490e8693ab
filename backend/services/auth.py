"""API keys: generation, hashing and authentication (with a short in-process cache)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from backend.adapters.ratelimit import FailureThrottle
from backend.db.pool import Executor
from backend.domain.errors import AuthThrottled
from backend.repo.api_keys import ApiKeyRepository

KEY_PREFIX = "jp_"


def hash_key(raw: str) -> str:
    """sha256 of the secret: keys are high-entropy, so a fast hash is the right tool (no salt needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: the API key that made the request."""

    id: uuid.UUID
    name: str


class Authenticator:
    """Looks keys up by hash, caching hits briefly so every request does not pay a query.

    With a `FailureThrottle`, a client address that failed too often gets AuthThrottled before any lookup
    (keys already in the cache still pass: they cost no query).
    """

    def __init__(self, db: Executor, cache_seconds: float, failures: FailureThrottle | None = None) -> None:
        self._keys = ApiKeyRepository(db)
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._failures = failures

    async def authenticate(self, raw: str, client: str | None = None) -> Principal | None:
        """The key's principal, or None if unknown or revoked; AuthThrottled once `client` failed often."""
        digest = hash_key(raw)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        throttle = self._failures
        if throttle is not None and client:
            wait_s = await throttle.retry_after(client)
            if wait_s is not None:
                raise AuthThrottled(wait_s)
        row = await self._keys.active_by_hash(digest)
        if row is None:
            self._cache.pop(digest, None)
            if throttle is not None and client:
                await throttle.record(client)
            return None
        principal = Principal(row.id, row.name)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        return principal


async def create_key(db: Executor, name: str, raw: str | None = None) -> tuple[str, uuid.UUID]:
    """Store a key (a new random one unless `raw` is given); returns the secret and its id."""
    raw = raw or generate_key()
    row = await ApiKeyRepository(db).add(name, hash_key(raw))
    return raw, row.id


async def ensure_key(db: Executor, raw: str, name: str = "bootstrap") -> uuid.UUID:
    """Make sure this exact key exists (idempotent); used for BOOTSTRAP_API_KEY."""
    existing = await ApiKeyRepository(db).by_hash(hash_key(raw))
    if existing is not None:
        return existing.id
    return (await create_key(db, name, raw))[1]
