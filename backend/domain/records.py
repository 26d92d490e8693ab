"""What the repositories return: frozen records, one shape per table row. API views validate from these."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

from backend.domain.enums import JobStatus, RunOutcome


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file a run published to storage, as recorded in the job row's `result_file`."""

    key: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str

    def as_json(self) -> dict[str, Any]:
        """The row's `result_file` value."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of `jobs`."""

    id: uuid.UUID
    owner_id: uuid.UUID
    type: str
    name: str | None
    payload: dict[str, Any]
    status: JobStatus
    progress: float
    attempts: int
    max_attempts: int
    result: Any
    error: str | None
    result_file: StoredFile | None
    tags: list[str]
    cancel_requested: bool
    worker_id: str | None
    claim_token: uuid.UUID | None
    lease_expires_at: datetime | None
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    priority: int
    concurrency_key: str | None
    concurrency_limit: int | None
    schedule_id: uuid.UUID | None = None  # the schedule whose fire made it
    schedule_fire_at: datetime | None = None  # that fire's slot: unique per schedule
    webhook_url: str | None = None  # told when the job ends
    batch_id: uuid.UUID | None = None  # the batch it was submitted in
    depends_on: list[uuid.UUID] = field(default_factory=list)  # the jobs it waits for
    traceparent: str | None = None  # the W3C trace context it was submitted in

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        """Build from a database row holding every column of `jobs`."""
        values = dict(row.items())
        values["status"] = JobStatus(values["status"])
        file = values["result_file"]
        values["result_file"] = StoredFile(**file) if file else None
        return cls(**values)


JOB_COLUMNS = tuple(f.name for f in fields(JobRecord))


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of `job_runs`: a claim of a job by a worker."""

    id: int
    job_id: uuid.UUID
    attempt: int
    claim_token: uuid.UUID
    worker_id: str
    started_at: datetime
    ended_at: datetime | None
    outcome: RunOutcome | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        """Build from a `job_runs` row."""
        values = dict(row.items())
        values["outcome"] = RunOutcome(values["outcome"]) if values["outcome"] else None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker's hold on one run of a job: the token fences every later write."""

    job_id: uuid.UUID
    token: uuid.UUID
    attempt: int
    max_attempts: int
    type: str
    payload: dict[str, Any]
    owner_id: uuid.UUID
    traceparent: str | None = None  # the submission's trace context: the run span's parent


class Delivery(NamedTuple):
    """A "run this job" message to put on the queue: the job, its attempts so far (the delivery's
    identity), when it is due, and what orders it among others: its owner (fair share) and priority."""

    job_id: uuid.UUID
    attempts: int
    run_at: datetime | None = None  # None: now
    owner_id: uuid.UUID | None = None
    priority: int = 0

    @classmethod
    def of(cls, job: JobRecord) -> Delivery:
        """The next delivery of a job."""
        return cls(job.id, job.attempts, job.scheduled_at, job.owner_id, job.priority)

    @classmethod
    def first(cls, values: Mapping[str, Any], stamps: Mapping[str, Any]) -> Delivery:
        """The first delivery of a job just inserted with `values` (`new_job`'s), due when the database
        said (`stamps`: `NEW_JOB_STAMPS`)."""
        return cls(values["id"], 0, stamps["scheduled_at"], values["owner_id"], values.get("priority", 0))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Delivery:
        """From a row with `id, attempts, scheduled_at, owner_id, priority` (`DELIVERY_COLUMNS`)."""
        return cls(row["id"], row["attempts"], row["scheduled_at"], row["owner_id"], row["priority"])


@dataclass(frozen=True, slots=True)
class EndedRun:
    """A run end that the database accepted: where the job went next."""

    job_id: uuid.UUID
    status: JobStatus
    attempts: int
    scheduled_at: datetime
    owner_id: uuid.UUID
    priority: int
    # The caps this run was at when it ended: a job each of them held back may start now.
    freed_capped_slot: bool = False  # the owner's running cap
    freed_key: str | None = None  # the owner's concurrency key with this name
    freed_type: str | None = None  # the job type's TYPE_CONCURRENCY
    due_now: bool = False  # its scheduled_at had come (database time) when the run ended
    token: uuid.UUID | None = None  # the claim token of the run that ended
    has_children: bool = False  # other jobs depend on it (a completion may have made them pending)

    @property
    def freed_any_slot(self) -> bool:
        """Whether the run ended at one of its caps."""
        return self.freed_capped_slot or self.freed_key is not None or self.freed_type is not None

    @property
    def delivery(self) -> Delivery:
        """The job's next delivery (for a job that will run again)."""
        return Delivery(self.job_id, self.attempts, self.scheduled_at, self.owner_id, self.priority)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One row of `batches`."""

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str | None
    job_count: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BatchRecord:
        """Build from a `batches` row."""
        return cls(**dict(row.items()))


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A live worker process and the jobs it runs right now."""

    id: str
    host: str
    pid: int
    queue_name: str
    started_at: datetime
    last_seen: datetime
    running_job_ids: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failed jobs sharing a type and an error (the dashboard's failures page)."""

    type: str
    error: str | None
    jobs: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """One row of `schedules`."""

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    cron: str | None
    every_seconds: int | None
    timezone: str
    job: dict[str, Any]
    overlap: str
    paused: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleRecord:
        """Build from a database row holding every column of `schedules`."""
        return cls(**dict(row.items()))
