"""Schedule use cases (create, read, change, delete) and the duty that fires due schedules.

Firing, in every worker: a loop of the worker's own takes one due schedule at a time with
`FOR UPDATE SKIP LOCKED` (so several workers share the due schedules and never fire the same one at
once), and in that one transaction inserts the fire's job (the unique (schedule_id, schedule_fire_at)
makes a second insert of the same fire a no-op, whatever happens to the locks) and moves the schedule to
its first slot after now: after downtime the missed slots make one fire, not a burst. The job is enqueued
after the commit; if that fails, reconcile enqueues it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError

from backend.core.config import Settings
from backend.core.ids import uuid7
from backend.core.periodic import repeating
from backend.domain.errors import FieldError, ScheduleNotFound
from backend.domain.jobs import JobCreate, JobSubmission
from backend.domain.records import Delivery, JobRecord, ScheduleRecord
from backend.domain.schedules import Overlap, ScheduleCreate, SchedulePatch, Timing
from backend.repo.jobs import JobRepository
from backend.repo.schedules import ScheduleRepository
from backend.resources import Resources
from backend.services.jobs import check_allowed, new_job

log = logging.getLogger(__name__)

FIRES_PER_TICK = 500  # a tick stops after this many fires (or FIRE_BUDGET_S); the next goes on
FIRE_BUDGET_S = 5.0
SUBMISSION: TypeAdapter[JobSubmission] = TypeAdapter(JobCreate)


def timing_of(schedule: ScheduleRecord) -> Timing:
    """When a stored schedule fires."""
    return Timing(schedule.cron, schedule.every_seconds, schedule.timezone)


def job_template(body: JobSubmission) -> dict[str, Any]:
    """The stored form of a schedule's job submission (what the API shows, what each fire validates)."""
    return body.model_dump(mode="json", exclude_unset=True)


def encode_cursor(schedule: ScheduleRecord) -> str:
    """An opaque cursor pointing just past this schedule."""
    return base64.urlsafe_b64encode(schedule.id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    """Inverse of `encode_cursor`; ValueError if it was tampered with."""
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception as exc:  # binascii.Error, wrong length: all just a bad cursor
        raise ValueError("invalid cursor") from exc


class ScheduleService:
    """Schedule rules for the API; each operation borrows a pooled connection only as long as needed."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.schedules = ScheduleRepository(pool)

    async def create(self, owner_id: uuid.UUID, body: ScheduleCreate) -> ScheduleRecord:
        """Store a new schedule; its first slot is the first after now. 422 past MAX_SCHEDULES_PER_KEY."""
        check_allowed(self.settings, body.job, ("body", "job"), dependencies=False)
        values = {
            "id": uuid7(),
            "owner_id": owner_id,
            "name": body.name,
            "cron": body.cron,
            "every_seconds": body.every_seconds,
            "timezone": body.timezone,
            "job": job_template(body.job),
            "overlap": body.overlap.value,
            "paused": body.paused,
            "next_run_at": body.timing().next_after(datetime.now(UTC)),
        }
        limit = self.settings.max_schedules_per_key
        async with self.pool.acquire() as conn, conn.transaction():
            repo = ScheduleRepository(conn)
            if limit and await repo.lock_owner_and_count(owner_id) >= limit:
                message = f"MAX_SCHEDULES_PER_KEY reached: this key has {limit} schedules; delete one first"
                raise FieldError(message, ("body",), "schedule_limit")
            return await repo.insert(values)

    async def get(self, owner_id: uuid.UUID | None, schedule_id: uuid.UUID) -> ScheduleRecord:
        """The owner's schedule (any owner's if None) or ScheduleNotFound."""
        schedule = await self.schedules.get(schedule_id, owner_id)
        if schedule is None:
            raise ScheduleNotFound()
        return schedule

    async def list(
        self, owner_id: uuid.UUID | None, limit: int, cursor: str | None
    ) -> tuple[list[ScheduleRecord], str | None]:
        """A page of the owner's schedules (every owner's if None), oldest first, and the next cursor."""
        after = decode_cursor(cursor) if cursor else None
        rows = await self.schedules.list(owner_id, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1]) if more and rows else None)

    async def update(self, schedule: ScheduleRecord, patch: SchedulePatch) -> ScheduleRecord:
        """Apply the given fields; the next slot is computed afresh when the timing changes or the
        schedule resumes (a resumed schedule does not catch up on the time it was paused)."""
        if patch.job is not None:
            check_allowed(self.settings, patch.job, ("body", "job"), dependencies=False)
        async with self.pool.acquire() as conn, conn.transaction():
            repo = ScheduleRepository(conn)
            current = await repo.lock(schedule.id, schedule.owner_id)
            if current is None:
                raise ScheduleNotFound()
            return await repo.update(_patched(current, patch, datetime.now(UTC)))

    async def delete(self, schedule: ScheduleRecord) -> None:
        """Delete the schedule for good; the jobs it made stay (their `schedule_id` becomes null)."""
        if not await self.schedules.delete(schedule.id, schedule.owner_id):
            raise ScheduleNotFound()


def _patched(current: ScheduleRecord, patch: SchedulePatch, now: datetime) -> ScheduleRecord:
    timing = patch.timing(timing_of(current))
    resumed = current.paused and patch.paused is False
    next_run_at = timing.next_after(now) if patch.changes_timing() or resumed else current.next_run_at
    return replace(
        current,
        name=patch.name if patch.name is not None else current.name,
        cron=timing.cron,
        every_seconds=timing.every_seconds,
        timezone=timing.timezone,
        job=job_template(patch.job) if patch.job is not None else current.job,
        overlap=patch.overlap.value if patch.overlap is not None else current.overlap,
        paused=patch.paused if patch.paused is not None else current.paused,
        next_run_at=next_run_at,
    )


# --- firing ----------------------------------------------------------------------------------------


@dataclass
class FireReport:
    """What one tick of the firing duty did."""

    fired: int = 0  # jobs made
    skipped: int = 0  # fires skipped: overlap, a quota, a job that no longer validates, a failed insert
    duplicates: int = 0  # fires whose job already existed (the unique constraint held)


@dataclass(frozen=True)
class Fired:
    """One schedule's fire: the job it made, if any, and why not otherwise."""

    job: JobRecord | None
    skipped: str | None = None


async def fire_due(
    res: Resources, limit: int = FIRES_PER_TICK, budget_s: float = FIRE_BUDGET_S
) -> FireReport:
    """Fire every due schedule (up to `limit`, or for `budget_s`), one transaction each."""
    report, deadline = FireReport(), time.monotonic() + budget_s
    while report.fired + report.skipped + report.duplicates < limit and time.monotonic() < deadline:
        async with res.pool.acquire() as conn, conn.transaction():
            fired = await _fire_one(conn, res.settings)
        if fired is None:
            break
        if fired.job is not None:
            report.fired += 1
            await res.queue.enqueue(Delivery.of(fired.job))
        elif fired.skipped:
            report.skipped += 1
        else:
            report.duplicates += 1
    return report


async def _fire_one(conn: asyncpg.Connection, settings: Settings) -> Fired | None:
    """Fire the next due schedule no other worker holds; None when none is due."""
    schedules = ScheduleRepository(conn)
    due = await schedules.lock_due()
    if due is None:
        return None
    schedule, now = due
    slot = schedule.next_run_at
    fired = await _make_job(conn, settings, schedule, slot)
    job = fired.job
    await schedules.advance(
        schedule.id, _next_slot(schedule, now), slot if job else None, job.id if job else None
    )
    if fired.skipped:
        extra = {"schedule_id": str(schedule.id), "reason": fired.skipped, "slot": slot.isoformat()}
        log.info("schedule fire skipped", extra=extra)
    return fired


def _next_slot(schedule: ScheduleRecord, now: datetime) -> datetime:
    try:
        return timing_of(schedule).next_after(now, grid=schedule.next_run_at)
    except ValueError:  # a cron expression with no slot in sight: look again in a day
        log.warning("schedule has no next slot", extra={"schedule_id": str(schedule.id)})
        return now + timedelta(days=1)


async def _make_job(
    conn: asyncpg.Connection, settings: Settings, schedule: ScheduleRecord, slot: datetime
) -> Fired:
    jobs = JobRepository(conn)
    if schedule.overlap == Overlap.SKIP and schedule.last_job_id is not None:
        previous = await jobs.get(schedule.last_job_id)
        if previous is not None and not previous.status.is_terminal:
            return Fired(None, "overlap")
    if await _over_quota(jobs, settings, schedule.owner_id):
        return Fired(None, "quota")
    try:
        body = SUBMISSION.validate_python(schedule.job)
    except ValidationError:  # the type's payload rules changed since: the template no longer holds
        return Fired(None, "invalid_job")
    values = new_job(schedule.owner_id, body, settings.default_max_attempts)
    values["name"] = values["name"] or schedule.name
    try:
        async with conn.transaction():  # a savepoint: a failed insert must not stall the schedule
            return Fired(await jobs.insert_fired(values, schedule.id, slot))
    except asyncpg.PostgresError:
        log.exception("schedule fire failed", extra={"schedule_id": str(schedule.id)})
        return Fired(None, "error")


async def _over_quota(jobs: JobRepository, settings: Settings, owner_id: uuid.UUID) -> bool:
    """The submission quotas (MAX_WAITING_JOBS_PER_KEY, MAX_RESULT_BYTES_PER_KEY), read exactly."""
    max_waiting, max_bytes = settings.max_waiting_jobs_per_key, settings.max_result_bytes_per_key
    if not max_waiting and not max_bytes:
        return False
    waiting, result_bytes = await jobs.usage(owner_id, max_waiting + 1)
    return bool((max_waiting and waiting >= max_waiting) or (max_bytes and result_bytes >= max_bytes))


def firing(res: Resources, every_s: float) -> contextlib.AbstractAsyncContextManager[None]:
    """Fire due schedules every `every_s` seconds from this worker: a loop of its own rather than an arq
    cron tick, so fires never wait for a free job slot, and every worker takes part (SKIP LOCKED)."""
    return repeating("schedule firing", lambda: fire_due(res), every_s, jitter=0.1)
