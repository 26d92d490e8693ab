"""JobRepository: SQL about jobs for listing, cancel/retry, exports, reconcile and purge (SQLAlchemy).

The per-run statements every job runs are in `runs.py`, and the API's job insert and read in
`job_records.py`: both on raw asyncpg, for speed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.db.models import Job, JobRun

JOBS = cast(Table, Job.__table__)


@dataclass(frozen=True)
class JobFilters:
    """Filters for listing or exporting one owner's jobs."""

    statuses: Sequence[str] | None = None
    types: Sequence[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def clauses(self, owner_id: uuid.UUID) -> list[Any]:
        """SQL conditions for these filters, scoped to the owner."""
        out: list[Any] = [Job.owner_id == owner_id]
        if self.statuses:
            out.append(Job.status.in_(list(self.statuses)))
        if self.types:
            out.append(Job.type.in_(list(self.types)))
        if self.created_after:
            out.append(Job.created_at >= self.created_after)
        if self.created_before:
            out.append(Job.created_at < self.created_before)
        return out


_RECOVER_LAPSED_SQL = text(
    """
    WITH lapsed AS (
        SELECT id, claim_token FROM jobs
        WHERE status = 'running' AND lease_expires_at < now()
        ORDER BY lease_expires_at LIMIT :limit FOR UPDATE SKIP LOCKED
    ), j AS (
        UPDATE jobs SET
            status = CASE WHEN jobs.cancel_requested THEN 'cancelled'
                          WHEN jobs.attempts >= jobs.max_attempts THEN 'failed'
                          ELSE 'retrying' END,
            error = CASE WHEN jobs.cancel_requested THEN 'cancelled by request'
                         ELSE 'worker lost: lease expired' END,
            finished_at = CASE WHEN jobs.cancel_requested OR jobs.attempts >= jobs.max_attempts
                               THEN now() END,
            scheduled_at = now(), claim_token = NULL, worker_id = NULL, lease_expires_at = NULL,
            updated_at = now()
        FROM lapsed WHERE jobs.id = lapsed.id
        RETURNING jobs.id, jobs.status, jobs.attempts, jobs.scheduled_at, lapsed.claim_token
    ), run AS (
        UPDATE job_runs SET ended_at = now(), outcome = 'lost'
        WHERE claim_token IN (SELECT claim_token FROM j)
    )
    SELECT id, status, attempts, scheduled_at FROM j
    """
)


# Built once: constructing and coercing an INSERT per request costs more than executing it.
_INSERT = (
    insert(JOBS)
    .values(
        id=bindparam("id"),
        owner_id=bindparam("owner_id"),
        type=bindparam("type"),
        name=bindparam("name"),
        payload=bindparam("payload", type_=JOBS.c.payload.type),
        max_attempts=bindparam("max_attempts"),
        scheduled_at=func.coalesce(bindparam("scheduled_at", type_=JOBS.c.scheduled_at.type), func.now()),
    )
    .returning(*JOBS.c)
)


class JobRepository:
    """SQL for jobs, bound to one session."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Row[Any]:
        """Insert a new job; one round trip, server defaults returned."""
        params = {"scheduled_at": None, **values}
        return (await self.session.execute(_INSERT, params)).one()

    async def get_owned(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> Row[Any] | None:
        """The job if it exists and belongs to the owner."""
        stmt = select(JOBS).where(JOBS.c.id == job_id, JOBS.c.owner_id == owner_id)
        return (await self.session.execute(stmt)).first()

    async def list_owned(
        self, owner_id: uuid.UUID, filters: JobFilters, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[Row[Any]]:
        """A page of the owner's jobs, newest first, strictly older than the `before` cursor."""
        stmt = select(JOBS).where(*filters.clauses(owner_id))
        if before is not None:
            created, job_id = before
            stmt = stmt.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id)))
        stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).all())

    async def stream_owned(
        self, owner_id: uuid.UUID, filters: JobFilters, batch: int = 2000
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Every matching job, oldest first, through a server-side cursor (constant memory)."""
        cols = [Job.id, Job.type, Job.name, Job.status, Job.attempts, Job.error]
        cols += [Job.created_at, Job.started_at, Job.finished_at]
        stmt = select(*cols).where(*filters.clauses(owner_id)).order_by(Job.created_at, Job.id)
        result = await self.session.stream(stmt.execution_options(yield_per=batch))
        async for row in result:
            yield tuple(row)

    async def cancel_waiting(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> Row[Any] | None:
        """Cancel a pending or retrying job at once."""
        stmt = (
            update(JOBS)
            .where(
                JOBS.c.id == job_id, JOBS.c.owner_id == owner_id, JOBS.c.status.in_(["pending", "retrying"])
            )
            .values(
                status="cancelled",
                error="cancelled by request",
                finished_at=func.now(),
                updated_at=func.now(),
                cancel_requested=True,
            )
            .returning(*JOBS.c)
        )
        return (await self.session.execute(stmt)).first()

    async def request_cancel_running(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> Row[Any] | None:
        """Ask the worker running the job to abort it."""
        stmt = (
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.owner_id == owner_id, JOBS.c.status == "running")
            .values(cancel_requested=True, updated_at=func.now())
            .returning(*JOBS.c)
        )
        return (await self.session.execute(stmt)).first()

    async def requeue_ended(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> Row[Any] | None:
        """Put a failed or cancelled job back to pending with a fresh attempt budget."""
        stmt = (
            update(JOBS)
            .where(
                JOBS.c.id == job_id, JOBS.c.owner_id == owner_id, JOBS.c.status.in_(["failed", "cancelled"])
            )
            .values(
                status="pending",
                attempts=0,
                error=None,
                result=None,
                result_file=None,
                progress=0,
                cancel_requested=False,
                finished_at=None,
                started_at=None,
                scheduled_at=func.now(),
                updated_at=func.now(),
            )
            .returning(*JOBS.c)
        )
        return (await self.session.execute(stmt)).first()

    # --- cron side (the worker's per-run SQL is in backend/repo/runs.py) -----------------------------

    async def live_counts(self) -> dict[str, int]:
        """How many jobs wait or run right now (the partial indexes keep this cheap on a large table)."""
        stmt = text(
            """
            SELECT status, count(*) FROM jobs WHERE status IN ('pending', 'retrying') GROUP BY status
            UNION ALL SELECT 'running', count(*) FROM jobs WHERE status = 'running'
            """
        )
        return {row[0]: int(row[1]) for row in await self.session.execute(stmt)}

    async def oldest_due_wait_seconds(self) -> float:
        """How long the longest-waiting due job has been waiting (0 when none waits)."""
        stmt = text(
            """
            SELECT coalesce(extract(epoch FROM now() - min(scheduled_at)), 0) FROM jobs
            WHERE status IN ('pending', 'retrying') AND scheduled_at <= now()
            """
        )
        return float((await self.session.execute(stmt)).scalar_one())

    async def recover_lapsed(self, limit: int) -> list[Row[Any]]:
        """Take back running jobs whose lease lapsed: retry, fail or cancel them."""
        return list((await self.session.execute(_RECOVER_LAPSED_SQL, {"limit": limit})).all())

    async def due_waiting(self, older_than_s: float, limit: int) -> list[Row[Any]]:
        """Waiting jobs that are due (or soon due) and untouched for a while: candidates to re-enqueue."""
        stmt = text(
            """
            SELECT id, attempts, scheduled_at FROM jobs
            WHERE status IN ('pending', 'retrying') AND NOT cancel_requested
              AND updated_at < now() - make_interval(secs => :grace)
            ORDER BY scheduled_at LIMIT :limit
            """
        )
        return list((await self.session.execute(stmt, {"grace": older_than_s, "limit": limit})).all())

    async def expired_terminal(self, retention_days: float, limit: int) -> list[Row[Any]]:
        """A batch of terminal jobs that finished before the retention window."""
        stmt = text(
            """
            SELECT id, result_file FROM jobs
            WHERE status IN ('completed', 'failed', 'cancelled')
              AND finished_at < now() - make_interval(secs => :secs)
            ORDER BY finished_at LIMIT :limit
            """
        )
        params = {"secs": retention_days * 86400, "limit": limit}
        return list((await self.session.execute(stmt, params)).all())

    async def delete_ids(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete jobs by id (their runs go with them)."""
        result = await self.session.execute(delete(Job).where(Job.id.in_(list(ids))))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def existing_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these job ids still exist."""
        rows = await self.session.execute(select(Job.id).where(Job.id.in_(list(ids))))
        return set(rows.scalars())

    async def runs_of(self, job_id: uuid.UUID) -> list[JobRun]:
        """Every claim of a job, in order."""
        stmt = select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.started_at, JobRun.id)
        return list((await self.session.execute(stmt)).scalars())
