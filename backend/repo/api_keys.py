"""ApiKeyRepository: SQL for client credentials (hashes only)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend.db.pool import Executor
from backend.domain.enums import KeyRole

COLUMNS = "id, name, role, max_running, rate_limit, created_at, revoked_at"
ACTIVE_BY_HASH = f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
BY_HASH = f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1"
ADD = f"""
    INSERT INTO api_keys (id, name, key_hash, role, max_running, rate_limit) VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING {COLUMNS}
"""
ALL = f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
# Revoking twice keeps the first revocation time.
REVOKE = f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING {COLUMNS}"
SET_ROLE = f"UPDATE api_keys SET role = $2 WHERE id = $1 RETURNING {COLUMNS}"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One row of `api_keys`, without the hash."""

    id: uuid.UUID
    name: str
    role: KeyRole
    max_running: int | None
    rate_limit: str | None
    created_at: datetime
    revoked_at: datetime | None


def record_of(row: asyncpg.Record | None) -> ApiKeyRecord | None:
    """The stored key a row describes (None for no row)."""
    if row is None:
        return None
    values = dict(row.items())
    values["role"] = KeyRole(values["role"])
    return ApiKeyRecord(**values)


def _found(row: asyncpg.Record | None) -> ApiKeyRecord:
    record = record_of(row)
    assert record is not None
    return record


class ApiKeyRepository:
    """SQL for API keys."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def active_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The unrevoked key with this hash."""
        return record_of(await self.db.fetchrow(ACTIVE_BY_HASH, key_hash))

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, revoked or not."""
        return record_of(await self.db.fetchrow(BY_HASH, key_hash))

    async def add(
        self,
        name: str,
        key_hash: str,
        role: KeyRole = KeyRole.CLIENT,
        max_running: int | None = None,
        rate_limit: str | None = None,
    ) -> ApiKeyRecord:
        """Store a new key."""
        args = (uuid.uuid4(), name, key_hash, role.value, max_running, rate_limit)
        return _found(await self.db.fetchrow(ADD, *args))

    async def all(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        return [_found(r) for r in await self.db.fetch(ALL)]

    async def revoke(self, key_id: uuid.UUID) -> ApiKeyRecord | None:
        """Revoke exactly this key (again is harmless); None if no key has this id."""
        return record_of(await self.db.fetchrow(REVOKE, key_id))

    async def set_role(self, key_id: uuid.UUID, role: KeyRole) -> ApiKeyRecord | None:
        """Give this key a role; None if no key has this id."""
        return record_of(await self.db.fetchrow(SET_ROLE, key_id, role.value))
