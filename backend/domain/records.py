"""What the repositories return: frozen records, one shape per table row. API views validate from these."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class EndedRun:
    """A run end that the database accepted: where the job went next."""

    job_id: uuid.UUID
    status: JobStatus
    attempts: int
    scheduled_at: datetime
    owner_id: uuid.UUID
    # The caps this run was at when it ended: a job each of them held back may start now.
    freed_capped_slot: bool = False  # the owner's running cap
    freed_key: str | None = None  # the owner's concurrency key with this name
    freed_type: str | None = None  # the job type's TYPE_CONCURRENCY
    due_now: bool = False  # its scheduled_at had come (database time) when the run ended

    @property
    def freed_any_slot(self) -> bool:
        """Whether the run ended at one of its caps."""
        return self.freed_capped_slot or self.freed_key is not None or self.freed_type is not None


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
