"""BatchRepository: the `batches` rows and the counts of their jobs."""

from __future__ import annotations

import uuid

from backend.db.pool import Executor
from backend.domain.records import BatchRecord

INSERT = """
    INSERT INTO batches (id, owner_id, name, job_count) VALUES ($1, $2, $3, $4) RETURNING id
"""
GET_OWNED = "SELECT * FROM batches WHERE id = $1 AND owner_id = $2"
GET = "SELECT * FROM batches WHERE id = $1"
# Along ix_jobs_batch: a batch holds at most 1,000 jobs.
COUNTS = "SELECT status, count(*) FROM jobs WHERE batch_id = $1 GROUP BY status"
JOB_IDS = "SELECT id FROM jobs WHERE batch_id = $1 ORDER BY created_at, id"


class BatchRepository:
    """SQL for batches, on a pool or one connection."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def insert(
        self, owner_id: uuid.UUID, batch_id: uuid.UUID, name: str | None, jobs: int
    ) -> uuid.UUID:
        """Insert a batch row; its jobs follow in the same transaction."""
        inserted: uuid.UUID = await self.db.fetchval(INSERT, batch_id, owner_id, name, jobs)
        return inserted

    async def get(self, owner_id: uuid.UUID | None, batch_id: uuid.UUID) -> BatchRecord | None:
        """The owner's batch (any owner's if None)."""
        row = await (
            self.db.fetchrow(GET, batch_id)
            if owner_id is None
            else self.db.fetchrow(GET_OWNED, batch_id, owner_id)
        )
        return None if row is None else BatchRecord.from_row(row)

    async def counts(self, batch_id: uuid.UUID) -> dict[str, int]:
        """How many of the batch's jobs are in each status."""
        return {r["status"]: int(r["count"]) for r in await self.db.fetch(COUNTS, batch_id)}

    async def job_ids(self, batch_id: uuid.UUID) -> list[uuid.UUID]:
        """The batch's job ids, in submission order."""
        return [r["id"] for r in await self.db.fetch(JOB_IDS, batch_id)]
