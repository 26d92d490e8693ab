"""Recording how runs ended: one write for any number of runs, then the retries go back on the queue."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence

import asyncpg

from backend.adapters.queue import Queue
from backend.db.pool import Executor, retry_deadlocks
from backend.domain.enums import JobStatus
from backend.domain.lifecycle import RunEnd
from backend.domain.records import Delivery, EndedRun
from backend.repo.jobs import JobRepository

RunEnding = tuple[uuid.UUID, uuid.UUID, RunEnd]  # (job id, claim token, decision)


async def record_ends(
    db: Executor, ends: Sequence[RunEnding], owner_cap: int, type_caps: Mapping[str, int] | None = None
) -> list[EndedRun]:
    """Apply lifecycle decisions to runs whose claim is still live; the others are ignored. On a pool (one
    autocommit statement) a deadlock's victim runs again; in a transaction, that is the caller's part."""
    repo = JobRepository(db)
    if isinstance(db, asyncpg.Pool):
        return await retry_deadlocks(lambda: repo.end_runs(ends, owner_cap, type_caps))
    return await repo.end_runs(ends, owner_cap, type_caps)


async def requeue_after(db: Executor, queue: Queue, ended: Sequence[EndedRun]) -> None:
    """After commit (never inside it): enqueue every job that will run again, and for each slot freed in a
    cap that was full (an owner's running cap, an owner's concurrency key, a type's TYPE_CONCURRENCY) the
    cap's longest-waiting due jobs, which it held back: their earlier deliveries were refused and dropped.

    A completed run may have made blocked children pending (in its own transaction: trigger
    `jp_on_parent_end`, migration 0015): their first deliveries go on the queue here too. Two parents
    ending at once may both enqueue the same child: one delivery id, so one delivery (and a claim is
    fenced anyway); a lost enqueue is redone by reconcile, which finds every due pending job.

    A retry that is due now and freed a slot is not enqueued on its own: it is one of the cap's waiting
    jobs, and the freed slots go to the longest-waiting ones (a job held since before it, rather than the
    retry that would take the slot straight back). It is among them when it is the oldest; otherwise it
    waits in its cap like the others. A deferred retry is enqueued for its due time as usual.
    """
    deliveries: dict[uuid.UUID, Delivery] = {}
    for run in ended:
        if run.status is JobStatus.RETRYING and not (run.freed_any_slot and run.due_now):
            deliveries[run.job_id] = run.delivery
    jobs = JobRepository(db)
    promoted: list[asyncpg.Record] = []
    for owner_id, slots in Counter(run.owner_id for run in ended if run.freed_capped_slot).items():
        promoted += await jobs.next_due_of(owner_id, slots)
    for (owner_id, key), slots in Counter(
        (run.owner_id, run.freed_key) for run in ended if run.freed_key is not None
    ).items():
        promoted += await jobs.next_due_of_key(owner_id, key, slots)
    for job_type, slots in Counter(run.freed_type for run in ended if run.freed_type is not None).items():
        promoted += await jobs.next_due_of_type(job_type, slots)
    completed = [run.job_id for run in ended if run.status is JobStatus.COMPLETED]
    if completed:
        promoted += await jobs.promoted_children(completed)
    for row in promoted:
        deliveries.setdefault(row["id"], Delivery.from_row(row))
    if deliveries:
        await queue.enqueue_many(list(deliveries.values()))
