"""Batch schemas: many submissions in one request, and the batch as clients see it."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from backend.domain.enums import JobStatus
from backend.domain.jobs import JobCreate, JobPublic, new_job_view

MAX_BATCH_JOBS = 1000


def batch_location(batch_id: uuid.UUID) -> str:
    """The canonical URL path of a batch."""
    return f"/batches/{batch_id}"


class BatchCreate(BaseModel):
    """Jobs committed together, all or none; `depends_on` may name an earlier sibling as `#i`."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00]*$")
    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class BatchView(BaseModel):
    """A batch: how many of its jobs are in each status, and `done` once every one is terminal."""

    id: uuid.UUID
    name: str | None
    created_at: datetime
    counts: dict[str, int]
    done: bool


class BatchCreated(BatchView):
    """A new batch with its jobs, in the order submitted."""

    jobs: list[JobPublic]


def created_json(
    batch_id: uuid.UUID,
    name: str | None,
    rows: Sequence[Mapping[str, Any]],
    stamps: Sequence[Mapping[str, Any]],
    show_owner: bool = False,
) -> bytes:
    """A new batch as `BatchCreated` JSON, its jobs in the order submitted (their inserted values and
    what the database set, as `new_job_view` takes them), serialized once."""
    statuses = [str(r["status"]) for r in rows]
    view = {
        "id": batch_id,
        "name": name,
        "created_at": min(s["created_at"] for s in stamps),
        "counts": dict(Counter(statuses)),
        "done": all(JobStatus(s).is_terminal for s in set(statuses)),
        "jobs": [new_job_view(r, s, batch_id, show_owner) for r, s in zip(rows, stamps, strict=True)],
    }
    return to_json(view)
