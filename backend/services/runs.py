"""Recording how runs ended: one write for any number of runs, then the retries go back on the queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from backend.adapters.queue import Queue
from backend.db.pool import Executor
from backend.domain.enums import JobStatus
from backend.domain.lifecycle import RunEnd
from backend.domain.records import EndedRun
from backend.repo.jobs import JobRepository

RunEnding = tuple[uuid.UUID, uuid.UUID, RunEnd]  # (job id, claim token, decision)


async def record_ends(db: Executor, ends: Sequence[RunEnding]) -> list[EndedRun]:
    """Apply lifecycle decisions to runs whose claim is still live; the others are ignored."""
    return await JobRepository(db).end_runs(ends)


async def requeue_retries(queue: Queue, ended: Sequence[EndedRun]) -> None:
    """Enqueue the next delivery of every job that will run again (after commit, never inside it)."""
    for run in ended:
        if run.status is JobStatus.RETRYING:
            await queue.enqueue(run.job_id, run.attempts, run.scheduled_at)
