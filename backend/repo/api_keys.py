"""ApiKeyRepository: SQL for client credentials (hashes only)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import ApiKey


class ApiKeyRepository:
    """SQL for API keys, bound to one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_by_hash(self, key_hash: str) -> ApiKey | None:
        """The unrevoked key with this hash."""
        stmt = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""
        return (
            await self.session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))
        ).scalar_one_or_none()

    async def add(self, name: str, key_hash: str, prefix: str) -> ApiKey:
        """Store a new key."""
        row = ApiKey(id=uuid.uuid4(), name=name, key_hash=key_hash, prefix=prefix)
        self.session.add(row)
        await self.session.flush()
        return row

    async def all(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return list((await self.session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars())

    async def revoke(self, prefix: str) -> int:
        """Revoke the keys whose display prefix matches."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
