"""BatchRepository: the `batches` rows and the counts of their jobs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from backend.db.pool import Executor
from backend.domain.records import BatchRecord

INSERT = """
    INSERT INTO batches (id, owner_id, name, job_count) VALUES ($1, $2, $3, $4) RETURNING id
"""
GET_OWNED = "SELECT * FROM batches WHERE id = $1 AND owner_id = $2"
GET = "SELECT * FROM batches WHERE id = $1"
# Batches past the retention none of whose jobs is left (purged): along ix_batches_created and ix_jobs_batch.
DELETE_EMPTY = """
    DELETE FROM batches WHERE id IN (
        SELECT b.id FROM batches b
        WHERE b.created_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id)
        LIMIT $2)
"""
# Along ix_jobs_batch: a batch holds at most 1,000 jobs.
COUNTS = "SELECT status, count(*) FROM jobs WHERE batch_id = $1 GROUP BY status"
JOB_IDS = "SELECT id FROM jobs WHERE batch_id = $1 ORDER BY created_at, id"
# The counts of many batches in one statement (a list page's), along ix_jobs_batch.
COUNTS_OF = """
    SELECT batch_id, status, count(*) FROM jobs WHERE batch_id = ANY($1::uuid[]) GROUP BY batch_id, status
"""
# Newest first; the cursor is a row comparison even on the first page, so it is always an index condition
# on ix_batches_owner_created (a key's) or ix_batches_created (every key's): deep pages cost the same.
KEYSET = """
      (created_at, id) < (coalesce($2::timestamptz, 'infinity'),
                          coalesce($3::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
    ORDER BY created_at DESC, id DESC LIMIT $4
"""
# $1 is NULL in the second statement, kept so that both number their parameters alike.
LIST_OWNED = "SELECT * FROM batches WHERE owner_id = $1 AND" + KEYSET
LIST_ANY_OWNER = "SELECT * FROM batches WHERE $1::uuid IS NULL AND" + KEYSET


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

    async def counts_of(self, batch_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
        """How many jobs of each batch are in each status (a batch with no jobs left is absent)."""
        counts: dict[uuid.UUID, dict[str, int]] = {}
        for r in await self.db.fetch(COUNTS_OF, list(batch_ids)):
            counts.setdefault(r["batch_id"], {})[r["status"]] = int(r["count"])
        return counts

    async def list_owned(
        self, owner_id: uuid.UUID | None, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[BatchRecord]:
        """A page of the owner's batches (every owner's if None), newest first, strictly older than
        `before`."""
        created, batch_id = before if before is not None else (None, None)
        statement = LIST_OWNED if owner_id is not None else LIST_ANY_OWNER
        rows = await self.db.fetch(statement, owner_id, created, batch_id, limit)
        return [BatchRecord.from_row(r) for r in rows]

    async def delete_empty(self, older_than_s: float, limit: int) -> int:
        """Delete up to `limit` batches older than `older_than_s` that no job belongs to any more."""
        status: str = await self.db.execute(DELETE_EMPTY, float(older_than_s), limit)
        return int(status.split()[-1])
