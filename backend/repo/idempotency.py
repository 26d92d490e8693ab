"""IdempotencyRepository: the key records, arbitrated by the (owner_id, key) unique constraint."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import IdempotencyKey


class IdempotencyRepository:
    """SQL for idempotency records, bound to one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def store_first(
        self,
        owner_id: uuid.UUID,
        key: str,
        fingerprint: str,
        status_code: int,
        body: dict[str, Any],
        location: str | None,
        job_id: uuid.UUID | None,
        ttl_seconds: float,
    ) -> bool:
        """Insert the record, or take over an expired one; False if a live record already holds the key.

        A concurrent transaction holding the same key makes this statement wait for it to finish, so
        exactly one request wins and the others see its committed record.
        """
        values = {
            "id": uuid.uuid4(),
            "owner_id": owner_id,
            "key": key,
            "fingerprint": fingerprint,
            "status_code": status_code,
            "response_body": body,
            "location": location,
            "job_id": job_id,
        }
        insert_stmt = insert(IdempotencyKey).values(**values)
        excluded = insert_stmt.excluded
        stmt = insert_stmt.on_conflict_do_update(
            constraint="uq_idempotency_keys_owner_key",
            set_={
                "fingerprint": excluded.fingerprint,
                "status_code": excluded.status_code,
                "response_body": excluded.response_body,
                "location": excluded.location,
                "job_id": excluded.job_id,
                "created_at": text("now()"),
            },
            where=IdempotencyKey.created_at < text("now() - make_interval(secs => :ttl)"),
        ).returning(IdempotencyKey.id)
        row = (await self.session.execute(stmt, {"ttl": ttl_seconds})).first()
        return row is not None

    async def get_live(self, owner_id: uuid.UUID, key: str, ttl_seconds: float) -> IdempotencyKey | None:
        """The committed record for this key if it is younger than the TTL."""
        stmt = select(IdempotencyKey).where(
            IdempotencyKey.owner_id == owner_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at >= text("now() - make_interval(secs => :ttl)"),
        )
        return (await self.session.execute(stmt, {"ttl": ttl_seconds})).scalar_one_or_none()

    async def delete_expired(self, ttl_seconds: float, limit: int) -> int:
        """Delete one batch of expired records; returns how many went."""
        stmt = text(
            """
            DELETE FROM idempotency_keys WHERE id IN (
                SELECT id FROM idempotency_keys WHERE created_at < now() - make_interval(secs => :ttl)
                LIMIT :limit
            )
            """
        )
        result = await self.session.execute(stmt, {"ttl": ttl_seconds, "limit": limit})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def count_expired(self, ttl_seconds: float) -> int:
        """How many records are past the TTL (for dry runs)."""
        stmt = text(
            "SELECT count(*) FROM idempotency_keys WHERE created_at < now() - make_interval(secs => :ttl)"
        )
        return int((await self.session.execute(stmt, {"ttl": ttl_seconds})).scalar_one())
