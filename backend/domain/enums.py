"""Job statuses and run outcomes: the only place their names are spelled."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its lifecycle (transitions: `backend/domain/lifecycle.py`)."""

    BLOCKED = "blocked"  # waiting for the jobs it depends on (`depends_on`) to complete
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
LIVE_STATUSES = (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING)


class RunOutcome(StrEnum):
    """How one claimed run of a job ended (one row per claim in `job_runs`)."""

    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"
    LOST = "lost"


class KeyRole(StrEnum):
    """What an API key may do: `client` steers its own jobs; `admin` also every tenant's, and the keys."""

    CLIENT = "client"
    ADMIN = "admin"


def sql_list(values: frozenset[JobStatus] | tuple[JobStatus, ...]) -> str:
    """`'a', 'b'` for an SQL `IN (...)` written from the enum (sorted, so statements are stable).

    Literal lists, not parameters, where a partial index must match: PostgreSQL can prove a partial
    index's predicate only from constants, never from a parameter of a generic plan.
    """
    return ", ".join(f"'{v.value}'" for v in sorted(values))
