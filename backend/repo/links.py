"""LinkRepository: what a download link may serve."""

from __future__ import annotations

import uuid

from backend.db.pool import Executor
from backend.domain.enums import KeyRole
from backend.domain.records import JobRecord

# The job, if the link's key is still active and may see it (its own, or any for an admin key): revoking
# the key kills its links at once.
JOB_FOR_KEY = f"""
    SELECT j.* FROM jobs j, api_keys k
    WHERE j.id = $1 AND k.id = $2 AND k.revoked_at IS NULL
      AND (j.owner_id = k.id OR k.role = '{KeyRole.ADMIN.value}')
"""


class LinkRepository:
    """SQL for download links."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def job_for_key(self, job_id: uuid.UUID, key_id: uuid.UUID) -> JobRecord | None:
        """The job a link of `key_id` may serve, or None."""
        row = await self.db.fetchrow(JOB_FOR_KEY, job_id, key_id)
        return JobRecord.from_row(row) if row else None
