"""Job status and type names shared by the API, the repositories and the worker."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its lifecycle."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for statuses a job never leaves on its own."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
WAITING_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RETRYING})


class JobType(StrEnum):
    """The kinds of work the platform runs (one handler module each under `worker/tasks/`)."""

    CSV_REPORT = "csv_report"
    JOBS_EXPORT = "jobs_export"
    SQUARE_SUM = "square_sum"
    CUBE_SUM = "cube_sum"
    SLEEP = "sleep"


class RunOutcome(StrEnum):
    """How one claimed run of a job ended (one row per claim in `job_runs`)."""

    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"
    LOST = "lost"
