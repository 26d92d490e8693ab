"""Job rules: submission (with idempotency), lookup, listing, cancellation and manual retry."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.config import Settings
from backend.core.ids import uuid7
from backend.domain.enums import JobStatus, JobType
from backend.domain.errors import IdempotencyKeyInFlight, IdempotencyKeyReused, JobNotFound, JobStateConflict
from backend.domain.jobs import JobCreateBase, JobPublic, ResultFile
from backend.repo.idempotency import IdempotencyRepository
from backend.repo.job_records import JobRecords
from backend.repo.jobs import JobFilters, JobRepository
from backend.services.dispatch import Dispatcher
from backend.services.idempotency import IdempotencyRequest

JobRow = Row[Any] | SimpleNamespace  # a SQLAlchemy row, or a raw asyncpg row with attribute access


def job_location(job_id: uuid.UUID) -> str:
    """The canonical URL path of a job."""
    return f"/jobs/{job_id}"


def to_public(job: JobRow) -> JobPublic:
    """The API view of a job row."""
    file = None
    if job.result_file:
        meta = job.result_file
        file = ResultFile(
            filename=meta["filename"],
            size_bytes=meta["size_bytes"],
            sha256=meta["sha256"],
            content_type=meta["content_type"],
            url=f"{job_location(job.id)}/download",
        )
    return JobPublic(
        id=job.id,
        type=JobType(job.type),
        name=job.name,
        payload=job.payload,
        status=JobStatus(job.status),
        progress=job.progress,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        result=job.result,
        error=job.error,
        result_file=file,
        created_at=job.created_at,
        scheduled_at=job.scheduled_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
    )


@dataclass(frozen=True)
class Submitted:
    """The response to a submission, fresh or replayed."""

    status_code: int
    body: dict[str, Any]
    location: str | None
    replayed: bool


def encode_cursor(job: JobRow) -> str:
    """An opaque cursor pointing just past this job."""
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of `encode_cursor`; ValueError if it was tampered with."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    return datetime.fromisoformat(created), uuid.UUID(job_id)


class JobService:
    """Job rules: each operation borrows a connection only for as long as it needs one."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        engine: AsyncEngine,
        transactions: async_sessionmaker[AsyncSession],
        pool: asyncpg.Pool,
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.engine = engine  # autocommit: each statement is its own transaction
        self.transactions = transactions
        self.pool = pool  # raw asyncpg for the hot single-statement paths

    async def submit(
        self, owner_id: uuid.UUID, body: JobCreateBase, idem: IdempotencyRequest | None
    ) -> Submitted:
        """Store the job (and its idempotency record, in the same transaction), then enqueue it."""
        values = self._new_job(owner_id, body)
        job: JobRow
        if idem is None:
            async with self.pool.acquire() as conn:  # one statement, committed on its own
                job = await JobRecords(conn).insert(values)
        else:
            outcome = await self._submit_with_key(owner_id, values, idem)
            if isinstance(outcome, Submitted):
                return outcome
            job = outcome
        await self.dispatcher.enqueue(job.id, 0, job.scheduled_at)
        return Submitted(201, to_public(job).model_dump(mode="json"), job_location(job.id), replayed=False)

    async def _submit_with_key(
        self, owner_id: uuid.UUID, values: dict[str, Any], idem: IdempotencyRequest
    ) -> Row[Any] | Submitted:
        """Job, key record and stored response in one transaction; the replay if the key is taken."""
        async with self.transactions() as session:
            job = await JobRepository(session).insert(values)
            public = to_public(job).model_dump(mode="json")
            if not await self._store_key(session, owner_id, idem, public, job_location(job.id), job.id):
                await session.rollback()
                return await self._replay(session, owner_id, idem)
            await session.commit()
        return job

    def _new_job(self, owner_id: uuid.UUID, body: JobCreateBase) -> dict[str, Any]:
        values: dict[str, Any] = {
            "id": uuid7(),
            "owner_id": owner_id,
            "type": str(body.type),  # type: ignore[attr-defined]
            "name": body.name,
            "payload": body.payload.model_dump(mode="json"),  # type: ignore[attr-defined]
            "max_attempts": body.max_attempts or self.settings.default_max_attempts,
        }
        if body.scheduled_at is not None:
            values["scheduled_at"] = body.scheduled_at
        return values

    async def _store_key(
        self,
        session: AsyncSession,
        owner_id: uuid.UUID,
        idem: IdempotencyRequest,
        body: dict[str, Any],
        location: str,
        job_id: uuid.UUID,
    ) -> bool:
        repo = IdempotencyRepository(session)
        ttl = self.settings.idempotency_ttl_hours * 3600
        return await repo.store_first(owner_id, idem.key, idem.fingerprint, 201, body, location, job_id, ttl)

    async def _replay(
        self, session: AsyncSession, owner_id: uuid.UUID, idem: IdempotencyRequest
    ) -> Submitted:
        ttl = self.settings.idempotency_ttl_hours * 3600
        record = await IdempotencyRepository(session).get_live(owner_id, idem.key, ttl)
        if record is None:
            # The live record expired between our insert attempt and this read: a retry will take it over.
            raise IdempotencyKeyInFlight()
        if record.fingerprint != idem.fingerprint:
            raise IdempotencyKeyReused()
        return Submitted(record.status_code, record.response_body, record.location, replayed=True)

    async def get(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> JobRow:
        """The owner's job or JobNotFound."""
        async with self.pool.acquire() as conn:
            job = await JobRecords(conn).get_owned(owner_id, job_id)
        if job is None:
            raise JobNotFound()
        return job

    async def list(
        self, owner_id: uuid.UUID, filters: JobFilters, limit: int, cursor: str | None
    ) -> tuple[list[Row[Any]], str | None]:
        """A page of jobs, newest first, and the cursor for the next page (None at the end)."""
        before = decode_cursor(cursor) if cursor else None
        async with self.engine.connect() as conn:
            rows = await JobRepository(conn).list_owned(owner_id, filters, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1]) if more and rows else None)

    async def cancel(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> JobRow:
        """Cancel a waiting job now, or ask the worker to abort a running one; 409 once terminal."""
        async with self.engine.connect() as conn:
            jobs = JobRepository(conn)
            job = await jobs.cancel_waiting(owner_id, job_id)
            running = None if job is not None else await jobs.request_cancel_running(owner_id, job_id)
        if job is not None:
            await self.dispatcher.discard(job.id, job.attempts)
            return job
        if running is None:
            existing = await self.get(owner_id, job_id)
            raise JobStateConflict(f"Job is {existing.status}; only pending, retrying or running jobs cancel")
        return running

    async def retry(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> JobRow:
        """Run a failed or cancelled job again."""
        async with self.engine.connect() as conn:
            job = await JobRepository(conn).requeue_ended(owner_id, job_id)
        if job is None:
            existing = await self.get(owner_id, job_id)
            raise JobStateConflict(f"Job is {existing.status}; only failed or cancelled jobs can be retried")
        await self.dispatcher.enqueue(job.id, job.attempts, job.scheduled_at)
        return job


async def watch_job(
    pool: asyncpg.Pool, owner_id: uuid.UUID, job_id: uuid.UUID, interval_s: float
) -> AsyncIterator[JobPublic]:
    """Yield the job whenever its status, progress, attempts or error change; stop once it is terminal.

    Each poll borrows a connection only for its one query, so watchers never pin the pool while waiting.
    """
    last: tuple[Any, ...] | None = None
    while True:
        async with pool.acquire() as conn:
            job = await JobRecords(conn).get_owned(owner_id, job_id)
        if job is None:
            return
        snapshot = (job.status, job.progress, job.attempts, job.error)
        if snapshot != last:
            last = snapshot
            yield to_public(job)
        if JobStatus(job.status).is_terminal:
            return
        await asyncio.sleep(interval_s)
