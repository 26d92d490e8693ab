"""Job use cases: submission (with idempotency), lookup, listing, cancellation, manual retry."""

from __future__ import annotations

import base64
import builtins
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic_core import to_json

from backend.core.batching import GroupCommit
from backend.core.config import Settings
from backend.core.ids import uuid7
from backend.db.pool import retry_deadlocks
from backend.domain.batches import BatchCreate, BatchView, batch_location, created_json
from backend.domain.datetimes import in_utc_range
from backend.domain.enums import JobStatus
from backend.domain.errors import (
    BatchNotFound,
    FieldError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    JobNotFound,
    JobStateChanging,
)
from backend.domain.job_types import SPECS
from backend.domain.jobs import (
    DEPENDENCIES_NOT_ALLOWED,
    DEPENDENCIES_REQUIRED,
    DUPLICATE_DEPENDENCY,
    FORWARD_REFERENCE,
    NOT_IN_BATCH,
    UNKNOWN_JOB,
    WEBHOOK_URL_INVALID,
    BulkRequest,
    BulkResult,
    JobSubmission,
    job_location,
    new_job_view,
)
from backend.domain.lifecycle import CANCELLED_BY_REQUEST, Event, next_status, parent_ended_error, sources
from backend.domain.records import BatchRecord, Delivery, FailureGroup, JobRecord, RunRecord
from backend.repo.batches import BatchRepository
from backend.repo.idempotency import IdempotencyRepository, StoredResponse
from backend.repo.jobs import JobFilters, JobRepository
from backend.resources import Resources
from backend.services.idempotency import IdempotencyKey, IdempotencyRequest
from backend.services.quotas import QuotaGuard

BULK_BATCH = 1000  # jobs per statement in bulk actions: short transactions, no long row locks
TRANSITION_TRIES = 5  # a job moving under a client's request is rare; this only bounds a pathological race
FAILURES_WINDOW_S = 7 * 86400  # the failures page groups the failures of the last week


@dataclass(frozen=True)
class Submitted:
    """The response to a submission, fresh or replayed."""

    status_code: int
    body: dict[str, Any] | bytes  # a JSON object (a replay's), or a fresh response serialized once
    location: str | None
    replayed: bool

    def json_body(self) -> dict[str, Any]:
        """The body as an object (for the idempotency record)."""
        body: dict[str, Any] = json.loads(self.body) if isinstance(self.body, bytes) else self.body
        return body


class Keyed(Protocol):
    """A row listed newest first by keyset on (created_at, id): a job or a batch."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


def encode_cursor(row: Keyed) -> str:
    """An opaque cursor pointing just past this job (or batch)."""
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of `encode_cursor`; ValueError if it was tampered with."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    return in_utc_range(datetime.fromisoformat(created)), uuid.UUID(job_id)


def check_allowed(
    settings: Settings, body: JobSubmission, loc: tuple[str | int, ...], dependencies: bool = True
) -> None:
    """FieldError (422 at `loc` + field) if the submission's type may not be submitted here, or its
    `depends_on` is missing where the type needs it (`bundle`) or present where none may be (`dependencies`
    False: a schedule's job)."""
    spec = SPECS[body.type]
    if spec.diagnostic and not settings.diagnostic_jobs_enabled:
        message = f"Job type {body.type!r} is a diagnostic type, disabled here (ENABLE_DIAGNOSTIC_JOBS)"
        raise FieldError(message, (*loc, "type"), "job_type_disabled")
    if body.webhook_url and not body.webhook_url.startswith("https:") and not settings.webhook_allow_private:
        message = "webhook_url must be https (plain http only with WEBHOOK_ALLOW_PRIVATE=true)"
        raise FieldError(message, (*loc, "webhook_url"), WEBHOOK_URL_INVALID)
    if body.depends_on and not dependencies:
        raise FieldError(
            "A schedule's job cannot depend on other jobs", (*loc, "depends_on"), DEPENDENCIES_NOT_ALLOWED
        )
    if spec.needs_parents and not body.depends_on:
        message = f"Job type {body.type!r} needs `depends_on`: the jobs whose results it uses"
        raise FieldError(message, (*loc, "depends_on"), DEPENDENCIES_REQUIRED)


def first_status(
    parents: Sequence[uuid.UUID], statuses: Mapping[uuid.UUID, JobStatus]
) -> tuple[JobStatus, str | None]:
    """A new job's status from its parents': cancelled (with the error naming the parent) if one ended
    without completing, blocked while one is unfinished, else pending."""
    status = JobStatus.PENDING
    for parent in parents:
        parent_status = statuses[parent]
        if parent_status in (JobStatus.FAILED, JobStatus.CANCELLED):
            return JobStatus.CANCELLED, parent_ended_error(parent, parent_status)
        if parent_status is not JobStatus.COMPLETED:
            status = JobStatus.BLOCKED
    return status, None


def resolve_parents(
    refs: Sequence[str], index: int, ids: Sequence[uuid.UUID] | None, loc: tuple[str | int, ...]
) -> list[uuid.UUID]:
    """`depends_on` as job ids: a `#k` names the batch's job k, which must come before this one (`index`),
    so a batch's dependencies always point backwards and no cycle can be formed (nor with existing jobs:
    a parent must exist before its child). `ids` is None outside a batch."""
    parents = []
    for j, ref in enumerate(refs):
        if not ref.startswith("#"):
            parents.append(uuid.UUID(ref))
            continue
        k = int(ref[1:])
        if ids is None:
            raise FieldError(
                "`#i` names a job of the same batch: only in POST /batches", (*loc, j), NOT_IN_BATCH
            )
        if k >= index:
            message = f"{ref} must name an earlier job of the batch (before #{index}): no cycles"
            raise FieldError(message, (*loc, j), FORWARD_REFERENCE)
        parents.append(ids[k])
    if len(set(parents)) != len(parents):
        raise FieldError("must not name a job twice", loc, DUPLICATE_DEPENDENCY)
    return parents


def new_job(
    owner_id: uuid.UUID, body: JobSubmission, default_max_attempts: int, job_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The row values of a new job from a submission (a client's, or a schedule's at its fire), with a new
    id unless `job_id` is given (a batch's jobs get theirs first, for `#i` references)."""
    return {
        "id": job_id or uuid7(),
        "owner_id": owner_id,
        "type": body.type,
        "name": body.name,
        "payload": body.payload.model_dump(mode="json"),
        "max_attempts": body.max_attempts or default_max_attempts,
        "scheduled_at": body.scheduled_at,
        "tags": sorted(set(body.tags)),
        "priority": body.priority,
        "concurrency_key": body.concurrency_key,
        "concurrency_limit": body.concurrency_limit or (1 if body.concurrency_key else None),
        "webhook_url": body.webhook_url,
    }


def batch_view(batch: BatchRecord, counts: dict[str, int]) -> BatchView:
    """A batch with its jobs' counts by status; `done` once every one is terminal."""
    done = all(JobStatus(s).is_terminal for s in counts)
    return BatchView(id=batch.id, name=batch.name, created_at=batch.created_at, counts=counts, done=done)


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
        # Plain submissions (no Idempotency-Key, no depends_on) that arrive while others are being stored
        # are stored together: one INSERT and one enqueue script call for the lot, so under a burst of
        # POST /jobs each request pays a share of two round trips rather than two of its own (and the
        # pool lends one connection, not one per request).
        self._plain = GroupCommit(self._store_plain)

    async def submit(
        self,
        owner_id: uuid.UUID,
        body: JobSubmission,
        idem: IdempotencyKey | None,
        show_owner: bool = False,
        traceparent: str | None = None,
    ) -> Submitted:
        """Store the job (and its idempotency record, in the same transaction), then enqueue it.

        `show_owner`: the response is an admin's view (with `owner_id`). `traceparent`: the trace context
        the job's runs belong to."""
        self._allowed(body)
        await self.quotas.check(owner_id)
        if body.depends_on:
            return await self._submit_with_parents(owner_id, body, idem, show_owner, traceparent)
        values = self._new_job(owner_id, body, traceparent)
        if idem is None:
            stamps = await self._plain.submit(values)  # committed and enqueued with whatever came along
            if isinstance(stamps, Exception):
                raise stamps
            self.quotas.accepted(owner_id)
            return self._created(values, stamps, show_owner)
        outcome = await self._submit_with_key(owner_id, values, idem.request(body), show_owner)
        if isinstance(outcome, Submitted):
            return outcome
        stamps, created = outcome
        self.quotas.accepted(owner_id)
        await self.queue.enqueue(Delivery.first(values, stamps))
        return created

    @staticmethod
    def _created(values: Mapping[str, Any], stamps: Mapping[str, Any], show_owner: bool) -> Submitted:
        view = to_json(new_job_view(values, stamps, None, show_owner))
        return Submitted(201, view, job_location(values["id"]), replayed=False)

    async def _store_plain(self, rows: Sequence[dict[str, Any]]) -> list[Mapping[str, Any] | Exception]:
        """Insert jobs (of any owners) with one statement, then enqueue them with one script call; what
        the database set for each row, in order. Should the statement fail for several rows, each is
        stored alone, so that a row the database refuses fails its own request and no other."""
        try:
            stored: list[Mapping[str, Any] | Exception] = list(await self.jobs.insert_many(rows))
        except Exception:
            if len(rows) == 1:
                raise
            stored = [await self._store_alone(row) for row in rows]
        deliveries = [
            Delivery.first(row, stamps)
            for row, stamps in zip(rows, stored, strict=True)
            if not isinstance(stamps, Exception)
        ]
        await self.queue.enqueue_many(deliveries)
        return stored

    async def _store_alone(self, row: dict[str, Any]) -> Mapping[str, Any] | Exception:
        try:
            return (await self.jobs.insert_many([row]))[0]
        except Exception as exc:
            return exc

    async def _submit_with_parents(
        self,
        owner_id: uuid.UUID,
        body: JobSubmission,
        idem: IdempotencyKey | None,
        show_owner: bool,
        traceparent: str | None,
    ) -> Submitted:
        """A job with `depends_on`: its parents are locked and read in the transaction that inserts it."""

        def respond(rows: Sequence[dict[str, Any]], stamps: Sequence[Mapping[str, Any]]) -> Submitted:
            view = to_json(new_job_view(rows[0], stamps[0], None, show_owner))
            return Submitted(201, view, job_location(rows[0]["id"]), replayed=False)

        outcome = await self._store(
            owner_id, [body], None, None, ("body",), respond, idem, body, traceparent=traceparent
        )
        return outcome

    async def _store(
        self,
        owner_id: uuid.UUID,
        bodies: Sequence[JobSubmission],
        batch: tuple[uuid.UUID, str | None] | None,
        batch_ids: Sequence[uuid.UUID] | None,
        loc: tuple[str | int, ...],
        respond: Callable[[Sequence[dict[str, Any]], Sequence[Mapping[str, Any]]], Submitted],
        idem: IdempotencyKey | None,
        request: Any,
        *,
        traceparent: str | None,
    ) -> Submitted:
        """Insert jobs (and their batch) in one transaction, with one statement, all or none; then enqueue
        the ones that can run with one `enqueue_many`. `loc(i)` names job i in a 422."""
        ids = list(batch_ids) if batch_ids is not None else [uuid7() for _ in bodies]
        in_batch = batch is not None
        parents = [
            resolve_parents(
                b.depends_on, i, ids if in_batch else None, (*self._loc(loc, i, in_batch), "depends_on")
            )
            if b.depends_on
            else []
            for i, b in enumerate(bodies)
        ]
        new_ids = set(ids)
        ttl = self.settings.idempotency_ttl_hours * 3600
        async with self.pool.acquire() as conn:
            repo, keys = JobRepository(conn), IdempotencyRepository(conn)
            try:
                async with conn.transaction():
                    external = sorted({p for ps in parents for p in ps if p not in new_ids})
                    statuses: dict[uuid.UUID, JobStatus] = await repo.lock_parents(owner_id, external)
                    rows: list[dict[str, Any]] = []
                    pairs = []
                    for i, (body, ps) in enumerate(zip(bodies, parents, strict=True)):
                        for j, parent in enumerate(ps):
                            if parent not in statuses:
                                at = (*self._loc(loc, i, in_batch), "depends_on", j)
                                raise FieldError(
                                    f"No job {parent} of yours (it must exist first)", at, UNKNOWN_JOB
                                )
                        status, error = first_status(ps, statuses)
                        statuses[ids[i]] = status
                        row = self._new_job(owner_id, body, traceparent, ids[i])
                        row.update(status=str(status), error=error, depends_on=ps)
                        rows.append(row)
                        if status is JobStatus.BLOCKED:
                            pairs += [(ids[i], p) for p in ps]
                    batch_id = None
                    if batch is not None:
                        batch_id = await BatchRepository(conn).insert(owner_id, batch[0], batch[1], len(rows))
                    stamps = await repo.insert_many(rows, batch_id)
                    await repo.insert_dependencies(pairs)
                    outcome = respond(rows, stamps)
                    if idem is not None:
                        req = idem.request(request)
                        response = StoredResponse(req.fingerprint, 201, outcome.json_body(), outcome.location)
                        if not await keys.store_first(
                            owner_id, req.key, ttl, response, rows[0]["id"] if not in_batch else None
                        ):
                            raise _KeyTaken()
            except _KeyTaken:
                return await self._replay(keys, owner_id, idem.request(request), ttl)  # type: ignore[union-attr]
        self.quotas.accepted(owner_id, len(rows))
        runnable = [
            Delivery.first(row, s)
            for row, s in zip(rows, stamps, strict=True)
            if row["status"] == JobStatus.PENDING
        ]
        await self.queue.enqueue_many(runnable)
        return outcome

    @staticmethod
    def _loc(loc: tuple[str | int, ...], i: int, in_batch: bool) -> tuple[str | int, ...]:
        return (*loc, i) if in_batch else loc

    def _allowed(self, body: JobSubmission) -> None:
        check_allowed(self.settings, body, ("body",))

    def _new_job(
        self,
        owner_id: uuid.UUID,
        body: JobSubmission,
        traceparent: str | None,
        job_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        values = new_job(owner_id, body, self.settings.default_max_attempts, job_id)
        values["traceparent"] = traceparent
        return values

    async def _submit_with_key(
        self, owner_id: uuid.UUID, values: dict[str, Any], idem: IdempotencyRequest, show_owner: bool
    ) -> tuple[Mapping[str, Any], Submitted] | Submitted:
        """Job, key record and stored response in one transaction (what the database set for the job,
        and the response); the replay if the key is taken."""
        ttl = self.settings.idempotency_ttl_hours * 3600
        async with self.pool.acquire() as conn:
            keys = IdempotencyRepository(conn)
            try:
                async with conn.transaction():
                    (stamps,) = await JobRepository(conn).insert_many([values])
                    fresh = self._created(values, stamps, show_owner)
                    response = StoredResponse(idem.fingerprint, 201, fresh.json_body(), fresh.location)
                    if not await keys.store_first(owner_id, idem.key, ttl, response, values["id"]):
                        raise _KeyTaken()
            except _KeyTaken:
                return await self._replay(keys, owner_id, idem, ttl)
        return stamps, fresh

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

    async def submit_batch(
        self,
        owner_id: uuid.UUID,
        body: BatchCreate,
        idem: IdempotencyKey | None,
        show_owner: bool = False,
        traceparent: str | None = None,
    ) -> Submitted:
        """Store a batch and its jobs in one transaction (all or none), then enqueue those that can run;
        every job is stored with `traceparent`."""
        for i, job in enumerate(body.jobs):
            check_allowed(self.settings, job, ("body", "jobs", i))
        await self.quotas.check(owner_id, len(body.jobs))
        batch = (uuid7(), body.name)
        ids = [uuid7() for _ in body.jobs]

        def respond(rows: Sequence[dict[str, Any]], stamps: Sequence[Mapping[str, Any]]) -> Submitted:
            view = created_json(batch[0], body.name, rows, stamps, show_owner)
            return Submitted(201, view, batch_location(batch[0]), replayed=False)

        return await self._store(
            owner_id, body.jobs, batch, ids, ("body", "jobs"), respond, idem, body, traceparent=traceparent
        )

    async def batch(self, owner_id: uuid.UUID | None, batch_id: uuid.UUID) -> BatchRecord:
        """The owner's batch (any owner's if None) or BatchNotFound."""
        batch = await BatchRepository(self.pool).get(owner_id, batch_id)
        if batch is None:
            raise BatchNotFound()
        return batch

    async def batch_view(self, batch: BatchRecord) -> BatchView:
        """The batch's counts by status, and whether every job is terminal."""
        return batch_view(batch, await BatchRepository(self.pool).counts(batch.id))

    async def list_batches(
        self, owner_id: uuid.UUID | None, limit: int, cursor: str | None
    ) -> tuple[builtins.list[BatchView], str | None]:
        """A page of the owner's batches (every owner's if None), newest first, each with its counts, and
        the cursor for the next page (None at the end)."""
        before = decode_cursor(cursor) if cursor else None
        repo = BatchRepository(self.pool)
        rows = await repo.list_owned(owner_id, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        counts = await repo.counts_of([b.id for b in rows])
        views = [batch_view(b, counts.get(b.id, {})) for b in rows]
        return views, (encode_cursor(rows[-1]) if more and rows else None)

    async def cancel_batch(self, batch: BatchRecord) -> int:
        """Cancel every job of the batch that can be (running ones are asked to abort); how many moved."""
        ids = await BatchRepository(self.pool).job_ids(batch.id)
        changed = 0
        for status in sorted(sources(Event.CANCEL)):
            changed += len(await self._transition(batch.owner_id, ids, status, Event.CANCEL))
        return changed

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

    async def failure_groups(
        self, owner_id: uuid.UUID | None, within_s: float = FAILURES_WINDOW_S, limit: int = 50
    ) -> builtins.list[FailureGroup]:
        """Recent failures grouped by type and error, biggest group first (every owner's if None)."""
        return await self.jobs.failure_groups(owner_id, within_s, limit)

    async def runs(self, job: JobRecord) -> builtins.list[RunRecord]:
        """Every claim of the job, in order."""
        return await self.jobs.runs_of(job.id)

    async def cancel(self, job: JobRecord) -> JobRecord:
        """Cancel a waiting job now, or ask the worker to abort a running one; 409 once terminal."""
        return await self._one(job, Event.CANCEL)

    async def retry(self, job: JobRecord) -> JobRecord:
        """Run a failed or cancelled job again with a fresh attempt budget."""
        return await self._one(job, Event.REQUEUE)

    async def bulk(self, owner_id: uuid.UUID, request: BulkRequest, event: Event) -> BulkResult:
        """Apply `event` to every matching job that allows it, a batch at a time; `dry_run` only counts."""
        wanted = set(request.status or JobStatus)
        statuses = sorted(s for s in sources(event) if s in wanted)
        if not statuses:
            return BulkResult(matched=0, changed=0)
        filters = JobFilters(
            statuses,
            request.type,
            request.created_after,
            request.created_before,
            request.tag,
            request.q,
            request.error,
        )
        matched = await self.jobs.count_owned(owner_id, filters)
        if request.dry_run:
            return BulkResult(matched=matched, changed=0)
        changed, after = 0, None
        while batch := await self.jobs.next_matching(owner_id, filters, after, BULK_BATCH):
            ids = [job_id for _, job_id in batch]
            for status in statuses:
                changed += len(await self._transition(owner_id, ids, status, event))
            if len(batch) < BULK_BATCH:
                break
            after = batch[-1]
        return BulkResult(matched=matched, changed=changed)

    async def _one(self, job: JobRecord, event: Event) -> JobRecord:
        for _ in range(TRANSITION_TRIES):
            moved = await self._transition(job.owner_id, [job.id], job.status, event)
            if moved:
                return moved[0]
            job = await self.get(job.owner_id, job.id)
        raise JobStateChanging()

    async def _transition(
        self, owner_id: uuid.UUID, ids: Sequence[uuid.UUID], status: JobStatus, event: Event
    ) -> Sequence[JobRecord]:
        """Move the owner's jobs among `ids` that are still `status` as the lifecycle says (409 if it
        refuses), then put the queue in line: cancelled deliveries dropped, requeued jobs enqueued."""
        target = next_status(status, event)
        if event is Event.REQUEUE:
            moved = await self.jobs.requeue(owner_id, ids, status, target)
            await self.queue.enqueue_many([Delivery.of(j) for j in moved])
            return moved
        error = CANCELLED_BY_REQUEST if target.is_terminal else None
        moved = await retry_deadlocks(lambda: self.jobs.cancel(owner_id, ids, status, target, error))
        if target.is_terminal:
            await self.queue.discard([(j.id, j.attempts) for j in moved])
        return moved
