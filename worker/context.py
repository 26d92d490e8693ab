"""What a handler gets (JobContext) and returns (Outcome)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from backend.adapters.storage import Storage
from backend.domain.records import StoredFile
from backend.repo.jobs import JobRepository


class Progress:
    """The latest progress a handler reported; the heartbeat writes it to the row (throttled)."""

    def __init__(self) -> None:
        self.value = 0.0

    def report(self, fraction: float) -> None:
        """Set progress in [0, 1]; cheap, safe to call from a worker thread."""
        self.value = min(1.0, max(0.0, float(fraction)))


@dataclass(frozen=True)
class Outcome:
    """What a successful run produced."""

    result: Any = None
    file: StoredFile | None = None


@dataclass(frozen=True)
class Parent:
    """A job this one depends on (`depends_on`), as its handler sees it: completed, with what it made."""

    id: uuid.UUID
    type: str
    name: str | None
    result: Any
    file: StoredFile | None


@dataclass(frozen=True)
class JobContext:
    """Everything a handler may use: its job's identity, storage, the database, progress."""

    job_id: uuid.UUID
    owner_id: uuid.UUID
    attempt: int
    storage: Storage
    pool: asyncpg.Pool
    progress: Progress = field(default_factory=Progress)
    run_id: str = "run"  # names this run's files, so a stale run can never replace the recorded one

    async def parents(self) -> list[Parent]:
        """The jobs this one depends on, in `depends_on` order (all completed: that is why it runs). Open a
        parent's file with `storage.stream(parent.file.key)`."""
        rows = await JobRepository(self.pool).parents_of(self.job_id)
        return [
            Parent(
                r["id"],
                r["type"],
                r["name"],
                r["result"],
                StoredFile(**r["result_file"]) if r["result_file"] else None,
            )
            for r in rows
        ]
