"""IdempotencyRepository: the key records, arbitrated by the (owner_id, key) unique constraint."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from backend.db.pool import Executor

TTL = "now() - make_interval(secs => $3)"
# Insert, or take over a record older than the TTL; no row back if a live record holds the key. A
# concurrent transaction holding the same key makes this wait for it, so exactly one request wins.
STORE_FIRST = f"""
    INSERT INTO idempotency_keys
        (id, owner_id, key, fingerprint, status_code, response_body, location, job_id)
    VALUES ($4, $1, $2, $5, $6, $7::json, $8, $9)
    ON CONFLICT ON CONSTRAINT uq_idempotency_keys_owner_key DO UPDATE SET
        fingerprint = excluded.fingerprint, status_code = excluded.status_code,
        response_body = excluded.response_body, location = excluded.location,
        job_id = excluded.job_id, created_at = now()
    WHERE idempotency_keys.created_at < {TTL}
    RETURNING id
"""
GET_LIVE = f"""
    SELECT fingerprint, status_code, response_body, location FROM idempotency_keys
    WHERE owner_id = $1 AND key = $2 AND created_at >= {TTL}
"""
EXPIRED = "created_at < now() - make_interval(secs => $1)"
DELETE_EXPIRED = f"""
    DELETE FROM idempotency_keys WHERE id IN (SELECT id FROM idempotency_keys WHERE {EXPIRED} LIMIT $2)
"""
COUNT_EXPIRED = f"SELECT count(*) FROM idempotency_keys WHERE {EXPIRED}"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first response given for an idempotency key."""

    fingerprint: str
    status_code: int
    response_body: dict[str, Any]
    location: str | None


class IdempotencyRepository:
    """SQL for idempotency records."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def store_first(
        self,
        owner_id: uuid.UUID,
        key: str,
        ttl_seconds: float,
        response: StoredResponse,
        job_id: uuid.UUID | None,
    ) -> bool:
        """Store the response for this key; False if a live record already holds it."""
        r = response
        args = (owner_id, key, float(ttl_seconds), uuid.uuid4(), r.fingerprint, r.status_code)
        row = await self.db.fetchrow(STORE_FIRST, *args, r.response_body, r.location, job_id)
        return row is not None

    async def get_live(self, owner_id: uuid.UUID, key: str, ttl_seconds: float) -> StoredResponse | None:
        """The committed record for this key if it is younger than the TTL."""
        row = await self.db.fetchrow(GET_LIVE, owner_id, key, float(ttl_seconds))
        return None if row is None else StoredResponse(**dict(row.items()))

    async def delete_expired(self, ttl_seconds: float, limit: int) -> int:
        """Delete one batch of expired records; returns how many went."""
        status: str = await self.db.execute(DELETE_EXPIRED, float(ttl_seconds), limit)
        return int(status.split()[-1])

    async def count_expired(self, ttl_seconds: float) -> int:
        """How many records are past the TTL (for dry runs)."""
        return int(await self.db.fetchval(COUNT_EXPIRED, float(ttl_seconds)))
