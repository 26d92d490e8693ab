"""Pausing and resuming job types (admins): a paused type's waiting jobs stay waiting, none is lost.

Pausing stops claims of the type (running jobs finish); a delivery that arrives meanwhile is refused by
the claim and dropped from Redis, and reconcile leaves the type alone. Resuming puts every waiting job of
the type within the queue horizon back on the queue, a batch at a time.
"""

from __future__ import annotations

from backend.domain.errors import UnknownJobType
from backend.domain.job_types import JOB_TYPES, SPECS, TypeState
from backend.domain.records import Delivery
from backend.repo.jobs import JobRepository
from backend.repo.paused_types import PausedTypeRepository
from backend.resources import Resources

RESUME_BATCH = 1000


class TypeControl:
    """Pause, resume and list job types."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.paused = PausedTypeRepository(resources.pool)

    async def all(self) -> list[TypeState]:
        """Every job type with its pause state."""
        paused = await self.paused.all()
        return [
            TypeState(type=s.name, paused=s.name in paused, paused_at=paused.get(s.name)) for s in JOB_TYPES
        ]

    async def pause(self, job_type: str) -> TypeState:
        """Pause the type; UnknownJobType if there is no such type."""
        _known(job_type)
        await self.paused.pause(job_type)
        return await self._state(job_type)

    async def resume(self, job_type: str) -> TypeState:
        """Resume the type and enqueue its waiting jobs; returns its state."""
        _known(job_type)
        if await self.paused.resume(job_type):
            await self._enqueue_waiting(job_type)
        return await self._state(job_type)

    async def _enqueue_waiting(self, job_type: str) -> None:
        jobs = JobRepository(self.resources.pool)
        horizon = self.resources.settings.queue_horizon_seconds
        after = None
        while batch := await jobs.waiting_of_type(job_type, horizon, after, RESUME_BATCH):
            await self.resources.queue.enqueue_many([Delivery.from_row(r) for r in batch])
            if len(batch) < RESUME_BATCH:
                break
            after = (batch[-1]["scheduled_at"], batch[-1]["id"])

    async def _state(self, job_type: str) -> TypeState:
        return next(s for s in await self.all() if s.type == job_type)


def _known(job_type: str) -> None:
    if job_type not in SPECS:
        raise UnknownJobType()
