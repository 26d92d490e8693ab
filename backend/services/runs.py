"""Recording how runs ended: one write for any number of runs, then the retries go back on the queue."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from backend.adapters.queue import Queue
from backend.db.pool import Executor
from backend.domain.enums import JobStatus
from backend.domain.lifecycle import RunEnd
from backend.domain.records import Delivery, EndedRun
from backend.repo.jobs import JobRepository

RunEnding = tuple[uuid.UUID, uuid.UUID, RunEnd]  # (job id, claim token, decision)


async def record_ends(db: Executor, ends: Sequence[RunEnding], owner_cap: int) -> list[EndedRun]:
    """Apply lifecycle decisions to runs whose claim is still live; the others are ignored."""
    return await JobRepository(db).end_runs(ends, owner_cap)


async def requeue_after(db: Executor, queue: Queue, ended: Sequence[EndedRun]) -> None:
    """After commit (never inside it): enqueue every job that will run again, and for each slot an owner
    at its running cap freed, that owner's longest-waiting due job (held back by the cap)."""
    await queue.enqueue_many([run.delivery for run in ended if run.status is JobStatus.RETRYING])
    freed = Counter(run.owner_id for run in ended if run.freed_capped_slot)
    for owner_id, slots in freed.items():
        rows = await JobRepository(db).next_due_of(owner_id, slots)
        await queue.enqueue_many([Delivery.from_row(row) for row in rows])
