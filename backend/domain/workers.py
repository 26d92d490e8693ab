"""Worker views for the admin API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class WorkerPublic(BaseModel):
    """A live worker process (seen within one lease) and the jobs it runs now."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    running_job_ids: list[uuid.UUID]
