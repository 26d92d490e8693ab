"""Recording how runs ended: one write for any number of runs, then the retries go back on the queue."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence

import asyncpg

from backend.adapters.queue import Queue
from backend.core.batching import GroupCommit
from backend.db.pool import Executor, retry_deadlocks
from backend.domain.enums import JobStatus
from backend.domain.lifecycle import RunEnd
from backend.domain.records import Claim, Delivery, EndedRun
from backend.repo.jobs import JobRepository

RunEnding = tuple[uuid.UUID, uuid.UUID, RunEnd]  # (job id, claim token, decision)
# A result PostgreSQL cannot take (NaN, an integer past 4,300 digits, ...) is the run's fault, not the
# database's: retrying would produce it again.
UNSTORABLE = (ValueError, TypeError, OverflowError, asyncpg.DataError)


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
    completed = [run.job_id for run in ended if run.status is JobStatus.COMPLETED and run.has_children]
    if completed:
        promoted += await jobs.promoted_children(completed)
    for row in promoted:
        deliveries.setdefault(row["id"], Delivery.from_row(row))
    if deliveries:
        await queue.enqueue_many(list(deliveries.values()))


class RunWriter:
    """One worker process's writes about its runs, group-committed (`GroupCommit`): the claims, heartbeats
    and run ends that arrive while the previous statement of their kind is in flight go to PostgreSQL
    together as one statement, and each caller still gets its own answer. Every guarantee of the single
    statements holds: each write is fenced by its own claim token, and the caps stay exact (see
    `JobRepository.claim_group`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: Queue,
        worker_id: str,
        lease_s: float,
        owner_cap: int,
        type_caps: Mapping[str, int] | None,
    ) -> None:
        self.pool, self.queue, self.worker_id, self.lease_s = pool, queue, worker_id, lease_s
        self.caps = (owner_cap, type_caps)
        self.repo = JobRepository(pool)
        self._claims = GroupCommit(self._claim_group)
        self._beats = GroupCommit(self._beat_group)
        self._ends = GroupCommit(self._end_group, split_on=UNSTORABLE)  # a refused result fails its run only

    async def claim(self, job_id: uuid.UUID) -> Claim | None:
        """Take the job for one run (see `JobRepository.claim`); None if it is not claimable now."""
        return await self._claims.submit(job_id)

    async def heartbeat(self, claim: Claim, progress: float) -> bool | None:
        """Renew the run's lease and store its progress: cancel_requested, or None if the claim is lost."""
        return await self._beats.submit((claim, progress))

    async def end(self, claim: Claim, end: RunEnd) -> bool:
        """Write the run's decision, fenced by its claim, then enqueue what it lets run (`requeue_after`).
        False if the claim was lost; a result the database refuses raises one of UNSTORABLE."""
        return await self._ends.submit((claim.job_id, claim.token, end))

    async def _claim_group(self, job_ids: Sequence[uuid.UUID]) -> list[Claim | None]:
        s = self.lease_s
        claims, busy = await retry_deadlocks(
            lambda: self.repo.claim_group(job_ids, self.worker_id, s, *self.caps)
        )
        for job_id in busy:  # another claim held a cap's lock: wait for it, as a single claim does
            if (claim := await self.repo.claim(job_id, self.worker_id, s, *self.caps)) is not None:
                claims[job_id] = claim
        # Two deliveries of one job in a group: one claim, answered to the first of them.
        return [claims.pop(job_id, None) for job_id in job_ids]

    async def _beat_group(self, beats: Sequence[tuple[Claim, float]]) -> list[bool | None]:
        cancel = await self.repo.heartbeats(beats, self.lease_s)
        return [cancel.get(claim.token) for claim, _ in beats]

    async def _end_group(self, ends: Sequence[RunEnding]) -> list[bool]:
        ended = await record_ends(self.pool, ends, *self.caps)
        await requeue_after(self.pool, self.queue, ended)
        live = {run.token for run in ended}
        return [token in live for _, token, _ in ends]
