"""ApiKeyRepository: SQL for client credentials (hashes only)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend.db.pool import Executor

COLUMNS = "id, name, prefix, created_at, revoked_at"
ACTIVE_BY_HASH = f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
BY_HASH = f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1"
ADD = f"INSERT INTO api_keys (id, name, key_hash, prefix) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
ALL = f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at"
REVOKE = "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL RETURNING id"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One row of `api_keys`, without the hash."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def _record(row: asyncpg.Record | None) -> ApiKeyRecord | None:
    return None if row is None else ApiKeyRecord(**dict(row.items()))


class ApiKeyRepository:
    """SQL for API keys."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def active_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The unrevoked key with this hash."""
        return _record(await self.db.fetchrow(ACTIVE_BY_HASH, key_hash))

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, revoked or not."""
        return _record(await self.db.fetchrow(BY_HASH, key_hash))

    async def add(self, name: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        """Store a new key."""
        record = _record(await self.db.fetchrow(ADD, uuid.uuid4(), name, key_hash, prefix))
        assert record is not None
        return record

    async def all(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        return [ApiKeyRecord(**dict(r.items())) for r in await self.db.fetch(ALL)]

    async def revoke(self, prefix: str) -> int:
        """Revoke the keys whose display prefix matches."""
        return len(await self.db.fetch(REVOKE, prefix))
