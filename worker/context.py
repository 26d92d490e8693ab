"""What a handler gets (JobContext) and returns (Outcome)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from backend.adapters.storage import Storage
from backend.domain.records import StoredFile


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
class JobContext:
    """Everything a handler may use: its job's identity, storage, the database, progress."""

    job_id: uuid.UUID
    owner_id: uuid.UUID
    attempt: int
    storage: Storage
    pool: asyncpg.Pool
    progress: Progress = field(default_factory=Progress)
    run_id: str = "run"  # names this run's files, so a stale run can never replace the recorded one
