"""ScheduleRepository: every statement on `schedules`, on asyncpg."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any

import asyncpg

from backend.db.pool import Executor
from backend.domain.records import ScheduleRecord

COLUMNS = tuple(f.name for f in fields(ScheduleRecord))

INSERT = """
    INSERT INTO schedules (id, owner_id, name, cron, every_seconds, timezone, job, overlap, paused,
                           next_run_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
    RETURNING *
"""
# Serialises one owner's creations (so the per-key limit is exact), then counts its schedules.
LOCK_AND_COUNT = """
    SELECT pg_advisory_xact_lock(hashtextextended('schedules:' || $1::uuid::text, 0)),
           (SELECT count(*) FROM schedules WHERE owner_id = $1::uuid) AS schedules
"""
GET = "SELECT * FROM schedules WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)"
GET_FOR_UPDATE = GET + " FOR UPDATE"
# A page in id order (ids are UUIDv7: creation order); $1 NULL is every owner's (an admin's view).
LIST = """
    SELECT * FROM schedules WHERE ($1::uuid IS NULL OR owner_id = $1) AND ($2::uuid IS NULL OR id > $2)
    ORDER BY id LIMIT $3
"""
UPDATE = """
    UPDATE schedules SET name = $2, cron = $3, every_seconds = $4, timezone = $5, job = $6::jsonb,
           overlap = $7, paused = $8, next_run_at = $9, updated_at = now()
    WHERE id = $1
    RETURNING *
"""
DELETE = "DELETE FROM schedules WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2) RETURNING id"
# One due schedule for this transaction; other workers skip it and take the next (ix_schedules_due).
LOCK_DUE = """
    SELECT *, now() AS db_now FROM schedules WHERE NOT paused AND next_run_at <= now()
    ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED
"""
ADVANCE = """
    UPDATE schedules SET next_run_at = $2, last_run_at = coalesce($3, last_run_at),
           last_job_id = coalesce($4, last_job_id)
    WHERE id = $1
"""


def _record(row: asyncpg.Record | None) -> ScheduleRecord | None:
    return None if row is None else ScheduleRecord.from_row({k: row[k] for k in COLUMNS})


class ScheduleRepository:
    """The schedule SQL, on a pool or on one connection (the locking statements need a transaction)."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def lock_owner_and_count(self, owner_id: uuid.UUID) -> int:
        """Hold the owner's creation lock until the transaction ends; how many schedules it has."""
        return int((await self.db.fetchrow(LOCK_AND_COUNT, owner_id))["schedules"])

    async def insert(self, values: dict[str, Any]) -> ScheduleRecord:
        """Insert a new schedule."""
        v = values
        args = (v["id"], v["owner_id"], v["name"], v["cron"], v["every_seconds"], v["timezone"], v["job"])
        row = await self.db.fetchrow(INSERT, *args, v["overlap"], v["paused"], v["next_run_at"])
        record = _record(row)
        assert record is not None
        return record

    async def get(self, schedule_id: uuid.UUID, owner_id: uuid.UUID | None) -> ScheduleRecord | None:
        """The schedule if it exists and belongs to the owner (any owner's if None)."""
        return _record(await self.db.fetchrow(GET, schedule_id, owner_id))

    async def lock(self, schedule_id: uuid.UUID, owner_id: uuid.UUID | None) -> ScheduleRecord | None:
        """Like `get`, and lock the row until the transaction ends (no fire moves it meanwhile)."""
        return _record(await self.db.fetchrow(GET_FOR_UPDATE, schedule_id, owner_id))

    async def list(
        self, owner_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
    ) -> list[ScheduleRecord]:
        """A page of the owner's schedules (every owner's if None) in creation order, after `after`."""
        rows = await self.db.fetch(LIST, owner_id, after, limit)
        return [r for r in map(_record, rows) if r is not None]

    async def update(self, record: ScheduleRecord) -> ScheduleRecord:
        """Write the schedule's settable columns as `record` has them."""
        r = record
        args = (r.id, r.name, r.cron, r.every_seconds, r.timezone, r.job, r.overlap, r.paused, r.next_run_at)
        updated = _record(await self.db.fetchrow(UPDATE, *args))
        assert updated is not None
        return updated

    async def delete(self, schedule_id: uuid.UUID, owner_id: uuid.UUID | None) -> bool:
        """Delete the schedule (its jobs stay, their schedule_id set to NULL); False if there was none."""
        return await self.db.fetchval(DELETE, schedule_id, owner_id) is not None

    # --- the firing duty -------------------------------------------------------------------------

    async def lock_due(self) -> tuple[ScheduleRecord, datetime] | None:
        """One due, active schedule no other transaction holds, locked, with the database's time."""
        row = await self.db.fetchrow(LOCK_DUE)
        record = _record(row)
        return None if row is None or record is None else (record, row["db_now"])

    async def advance(
        self,
        schedule_id: uuid.UUID,
        next_run_at: datetime,
        fired_at: datetime | None,
        job_id: uuid.UUID | None,
    ) -> None:
        """Move the schedule to its next slot, recording the fire's slot and job if it made one."""
        await self.db.execute(ADVANCE, schedule_id, next_run_at, fired_at, job_id)
