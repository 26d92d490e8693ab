"""What a handler gets (JobContext) and returns (Outcome)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.services.storage import Storage


class Progress:
    """The latest progress a handler reported; the heartbeat writes it to the row (throttled)."""

    def __init__(self) -> None:
        self.value = 0.0

    def report(self, fraction: float) -> None:
        """Set progress in [0, 1]; cheap, safe to call from a worker thread."""
        self.value = min(1.0, max(0.0, float(fraction)))


@dataclass(frozen=True)
class FileInfo:
    """A file a handler published to storage."""

    key: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str

    def as_json(self) -> dict[str, Any]:
        """The row's `result_file` value."""
        return {
            "key": self.key,
            "filename": self.filename,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }


@dataclass(frozen=True)
class Outcome:
    """What a successful run produced."""

    result: Any = None
    file: FileInfo | None = None


@dataclass(frozen=True)
class JobContext:
    """Everything a handler may use: its job's identity, storage, the database, progress."""

    job_id: uuid.UUID
    owner_id: uuid.UUID
    attempt: int
    storage: Storage
    sessions: async_sessionmaker[AsyncSession]
    progress: Progress = field(default_factory=Progress)
    run_id: str = "run"  # names this run's files, so a stale run can never replace the recorded one
