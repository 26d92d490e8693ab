"""Job use cases: submission (with idempotency), lookup, listing, cancellation, manual retry."""

from __future__ import annotations

import base64
import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.core.ids import uuid7
from backend.domain.datetimes import in_utc_range
from backend.domain.errors import (
    FieldError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    JobNotFound,
    JobStateChanging,
)
from backend.domain.job_types import SPECS
from backend.domain.jobs import JobPublic, JobSubmission, job_location
from backend.domain.lifecycle import CANCELLED_BY_REQUEST, Event, next_status
from backend.domain.records import JobRecord, RunRecord
from backend.repo.idempotency import IdempotencyRepository, StoredResponse
from backend.repo.jobs import JobFilters, JobRepository
from backend.resources import Resources
from backend.services.idempotency import IdempotencyKey, IdempotencyRequest
from backend.services.quotas import QuotaGuard

TRANSITION_TRIES = 5  # a job moving under a client's request is rare; this only bounds a pathological race


@dataclass(frozen=True)
class Submitted:
    """The response to a submission, fresh or replayed."""

    status_code: int
    body: dict[str, Any]
    location: str | None
    replayed: bool


def encode_cursor(job: JobRecord) -> str:
    """An opaque cursor pointing just past this job."""
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of `encode_cursor`; ValueError if it was tampered with."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    return in_utc_range(datetime.fromisoformat(created)), uuid.UUID(job_id)


class _KeyTaken(Exception):
    """A live record holds the idempotency key: roll this submission back and replay that one."""


class JobService:
    """Job rules; each operation borrows a pooled connection only for as long as it needs one."""

    def __init__(self, resources: Resources, quotas: QuotaGuard) -> None:
        self.settings = resources.settings
        self.pool = resources.pool
        self.queue = resources.queue
        self.quotas = quotas
        self.jobs = JobRepository(resources.pool)

    async def submit(
        self, owner_id: uuid.UUID, body: JobSubmission, idem: IdempotencyKey | None, show_owner: bool = False
    ) -> Submitted:
        """Store the job (and its idempotency record, in the same transaction), then enqueue it.

        `show_owner`: the response is an admin's view (with `owner_id`)."""
        self._allowed(body)
        await self.quotas.check(owner_id)
        values = self._new_job(owner_id, body)
        if idem is None:
            job = await self.jobs.insert(values)  # one statement, committed on its own
        else:
            outcome = await self._submit_with_key(owner_id, values, idem.request(body), show_owner)
            if isinstance(outcome, Submitted):
                return outcome
            job = outcome
        self.quotas.accepted(owner_id)
        await self.queue.enqueue(job.id, 0, job.scheduled_at)
        view = JobPublic.of(job, show_owner).model_dump(mode="json")
        return Submitted(201, view, job_location(job.id), replayed=False)

    def _allowed(self, body: JobSubmission) -> None:
        if SPECS[body.type].diagnostic and not self.settings.diagnostic_jobs_enabled:
            message = f"Job type {body.type!r} is a diagnostic type, disabled here (ENABLE_DIAGNOSTIC_JOBS)"
            raise FieldError(message, ("body", "type"), "job_type_disabled")

    def _new_job(self, owner_id: uuid.UUID, body: JobSubmission) -> dict[str, Any]:
        return {
            "id": uuid7(),
            "owner_id": owner_id,
            "type": body.type,
            "name": body.name,
            "payload": body.payload.model_dump(mode="json"),
            "max_attempts": body.max_attempts or self.settings.default_max_attempts,
            "scheduled_at": body.scheduled_at,
        }

    async def _submit_with_key(
        self, owner_id: uuid.UUID, values: dict[str, Any], idem: IdempotencyRequest, show_owner: bool
    ) -> JobRecord | Submitted:
        """Job, key record and stored response in one transaction; the replay if the key is taken."""
        ttl = self.settings.idempotency_ttl_hours * 3600
        async with self.pool.acquire() as conn:
            keys = IdempotencyRepository(conn)
            try:
                async with conn.transaction():
                    job = await JobRepository(conn).insert(values)
                    body = JobPublic.of(job, show_owner).model_dump(mode="json")
                    response = StoredResponse(idem.fingerprint, 201, body, job_location(job.id))
                    if not await keys.store_first(owner_id, idem.key, ttl, response, job.id):
                        raise _KeyTaken()
            except _KeyTaken:
                return await self._replay(keys, owner_id, idem, ttl)
        return job

    async def _replay(
        self, keys: IdempotencyRepository, owner_id: uuid.UUID, idem: IdempotencyRequest, ttl: float
    ) -> Submitted:
        record = await keys.get_live(owner_id, idem.key, ttl)
        if record is None:
            # The live record expired between our insert attempt and this read: a retry will take it over.
            raise IdempotencyKeyInFlight()
        if record.fingerprint != idem.fingerprint:
            raise IdempotencyKeyReused()
        return Submitted(record.status_code, record.response_body, record.location, replayed=True)

    async def get(self, owner_id: uuid.UUID | None, job_id: uuid.UUID) -> JobRecord:
        """The owner's job (any owner's if None) or JobNotFound."""
        job = await (self.jobs.get(job_id) if owner_id is None else self.jobs.get_owned(owner_id, job_id))
        if job is None:
            raise JobNotFound()
        return job

    async def list(
        self, owner_id: uuid.UUID | None, filters: JobFilters, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """A page of the owner's jobs (every owner's if None), newest first, and the cursor for the next
        page (None at the end)."""
        before = decode_cursor(cursor) if cursor else None
        rows = await self.jobs.list_owned(owner_id, filters, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1]) if more and rows else None)

    async def runs(self, job: JobRecord) -> builtins.list[RunRecord]:
        """Every claim of the job, in order."""
        return await self.jobs.runs_of(job.id)

    async def cancel(self, job: JobRecord) -> JobRecord:
        """Cancel a waiting job now, or ask the worker to abort a running one; 409 once terminal."""
        for _ in range(TRANSITION_TRIES):
            target = next_status(job.status, Event.CANCEL)
            error = CANCELLED_BY_REQUEST if target.is_terminal else None
            updated = await self.jobs.cancel(job, target, error)
            if updated is not None:
                if target.is_terminal:
                    await self.queue.discard(updated.id, updated.attempts)
                return updated
            job = await self.get(job.owner_id, job.id)
        raise JobStateChanging()

    async def retry(self, job: JobRecord) -> JobRecord:
        """Run a failed or cancelled job again with a fresh attempt budget."""
        for _ in range(TRANSITION_TRIES):
            updated = await self.jobs.requeue(job, next_status(job.status, Event.REQUEUE))
            if updated is not None:
                await self.queue.enqueue(updated.id, updated.attempts, updated.scheduled_at)
                return updated
            job = await self.get(job.owner_id, job.id)
        raise JobStateChanging()
