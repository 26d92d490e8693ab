"""Batch schemas: many submissions in one request, and the batch as clients see it."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.domain.jobs import JobCreate, JobPublic

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
