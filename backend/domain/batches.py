"""Batch schemas: many submissions in one request, and the batch as clients see it."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from backend.domain.jobs import JobCreate, JobPublic, public_view
from backend.domain.records import JobRecord

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
    batch_id: uuid.UUID, name: str | None, jobs: Sequence[JobRecord], show_owner: bool = False
) -> bytes:
    """A new batch as `BatchCreated` JSON, its jobs in the order submitted, serialized once from the
    records we just wrote (no model built and validated per job: see `public_view`)."""
    view = {
        "id": batch_id,
        "name": name,
        "created_at": min(j.created_at for j in jobs),
        "counts": dict(Counter(j.status.value for j in jobs)),
        "done": all(j.status.is_terminal for j in jobs),
        "jobs": [public_view(j, show_owner) for j in jobs],
    }
    return to_json(view)
