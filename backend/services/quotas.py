"""Per-key limits at submission: waiting jobs and result bytes kept (the running cap is the claim's).

Usage is read from PostgreSQL at most once a second per key and API process, then counted locally, so
the check costs no query on the hot path; a burst can overshoot a limit by at most a second of one
process's submissions.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from backend.core.config import Settings
from backend.domain.errors import QuotaExceeded
from backend.repo.jobs import JobRepository

USAGE_TTL_S = 1.0
WAITING_RETRY_AFTER_S = 5
BYTES_RETRY_AFTER_S = 60
MAX_CACHED_KEYS = 10_000


@dataclass
class Usage:
    """One key's usage as last read, plus what this process accepted since."""

    read_at: float
    waiting: int
    result_bytes: int


class QuotaGuard:
    """Refuses submissions past `MAX_WAITING_JOBS_PER_KEY` or `MAX_RESULT_BYTES_PER_KEY` (429)."""

    def __init__(self, jobs: JobRepository, settings: Settings) -> None:
        self.jobs = jobs
        self.max_waiting = settings.max_waiting_jobs_per_key
        self.max_bytes = settings.max_result_bytes_per_key
        self._usage: dict[uuid.UUID, Usage] = {}
        self._refreshing: set[uuid.UUID] = set()

    async def check(self, owner_id: uuid.UUID, jobs: int = 1) -> None:
        """Raise QuotaExceeded if `jobs` more waiting jobs would pass a limit."""
        if not self.max_waiting and not self.max_bytes:
            return
        usage = await self._current(owner_id)
        if self.max_waiting and usage.waiting + jobs > self.max_waiting:
            raise QuotaExceeded(
                f"MAX_WAITING_JOBS_PER_KEY reached: this key has {self.max_waiting} jobs waiting "
                "or blocked; retry when some have started",
                WAITING_RETRY_AFTER_S,
            )
        if self.max_bytes and usage.result_bytes >= self.max_bytes:
            raise QuotaExceeded(
                f"MAX_RESULT_BYTES_PER_KEY reached: this key keeps {usage.result_bytes} bytes of result "
                f"files (limit {self.max_bytes}); they go when their jobs are purged",
                BYTES_RETRY_AFTER_S,
            )

    def accepted(self, owner_id: uuid.UUID, jobs: int = 1) -> None:
        """Count jobs this process just stored for the key (until the next read)."""
        if (usage := self._usage.get(owner_id)) is not None:
            usage.waiting += jobs

    async def _current(self, owner_id: uuid.UUID) -> Usage:
        """The key's usage; one refresh at a time per key (concurrent requests use the last reading)."""
        now = time.monotonic()
        usage = self._usage.get(owner_id)
        fresh = usage is not None and now - usage.read_at <= USAGE_TTL_S
        if usage is not None and (fresh or owner_id in self._refreshing):
            return usage
        self._refreshing.add(owner_id)
        try:
            waiting, result_bytes = await self.jobs.usage(owner_id, self.max_waiting + 1)
        finally:
            self._refreshing.discard(owner_id)
        if len(self._usage) >= MAX_CACHED_KEYS:
            self._usage.clear()
        usage = self._usage[owner_id] = Usage(time.monotonic(), waiting, result_bytes)
        return usage
