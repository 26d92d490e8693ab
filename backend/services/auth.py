"""API keys: generation, hashing and authentication (with a short in-process cache)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from backend.adapters.ratelimit import FailureThrottle
from backend.db.pool import Executor
from backend.domain.enums import KeyRole
from backend.domain.errors import AuthThrottled
from backend.repo.api_keys import ApiKeyRecord, ApiKeyRepository

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
    role: KeyRole = KeyRole.CLIENT
    rate_limit: str | None = None  # this key's own RATE_LIMIT, if it has one

    @property
    def is_admin(self) -> bool:
        """True for an admin key (every tenant's jobs, the key list)."""
        return self.role is KeyRole.ADMIN

    @classmethod
    def of(cls, key: ApiKeyRecord) -> Principal:
        """The principal a stored key authenticates as."""
        return cls(key.id, key.name, key.role, key.rate_limit)


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
        principal = Principal.of(row)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        return principal

    def forget(self, key_id: uuid.UUID) -> None:
        """Drop this key from this process's cache (the others forget it within `cache_seconds`)."""
        for digest in [d for d, (_, p) in self._cache.items() if p.id == key_id]:
            self._cache.pop(digest, None)


async def create_key(
    db: Executor, name: str, raw: str | None = None, role: KeyRole = KeyRole.CLIENT
) -> tuple[str, uuid.UUID]:
    """Store a key with no limits of its own; returns the secret and its id (`add_key` sets limits)."""
    raw, row = await add_key(db, name, raw, role)
    return raw, row.id


async def add_key(
    db: Executor,
    name: str,
    raw: str | None = None,
    role: KeyRole = KeyRole.CLIENT,
    max_running: int | None = None,
    rate_limit: str | None = None,
) -> tuple[str, ApiKeyRecord]:
    """Store a key (a new random one unless `raw` is given); returns the secret and the stored key."""
    raw = raw or generate_key()
    row = await ApiKeyRepository(db).add(name, hash_key(raw), role, max_running, rate_limit)
    return raw, row


async def ensure_key(db: Executor, raw: str, name: str = "bootstrap") -> uuid.UUID:
    """Make sure this exact key exists as an admin key (idempotent); used for BOOTSTRAP_API_KEY.

    A bootstrap key stored before keys had roles is made admin: it is the operator's key.
    """
    keys = ApiKeyRepository(db)
    existing = await keys.by_hash(hash_key(raw))
    if existing is None:
        return (await create_key(db, name, raw, KeyRole.ADMIN))[1]
    if existing.role is not KeyRole.ADMIN:
        await keys.set_role(existing.id, KeyRole.ADMIN)
    return existing.id
