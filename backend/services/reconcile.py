"""Reconcile: recover runs whose worker vanished, and put back on the queue what Redis lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from backend.db.pool import retry_deadlocks
from backend.domain.lifecycle import Ending, RunState, decide
from backend.domain.records import Delivery, EndedRun
from backend.repo.jobs import JobRepository
from backend.resources import Resources
from backend.services.locks import RECONCILE_LOCK, try_xact_lock
from backend.services.runs import RunEnding, record_ends, requeue_after
from backend.services.workers import forget_dead_workers

log = logging.getLogger(__name__)

RECONCILE_BATCH = 1000


@dataclass
class ReconcileReport:
    """What one reconcile pass did."""

    recovered: int = 0
    requeued: int = 0


def _lapsed_end(res: Resources, row: asyncpg.Record) -> RunEnding:
    run = RunState(row["attempts"], row["max_attempts"], row["cancel_requested"])
    return row["id"], row["claim_token"], decide(Ending.LEASE_LAPSED, run, res.retry_policy)


async def recover_lapsed(res: Resources) -> int:
    """Take back running jobs whose lease lapsed (their worker died or froze): retry, fail or cancel them.

    Safe in every worker at once without a shared lock: `FOR UPDATE SKIP LOCKED` gives each lapsed run
    to one caller, and the write is fenced by its claim token. So a worker frozen while holding the
    reconcile lock can never stop recovery.
    """
    s = res.settings
    caps = (s.max_running_jobs_per_key, s.type_concurrency)

    async def recover() -> list[EndedRun]:
        async with res.pool.acquire() as conn, conn.transaction():
            rows = await JobRepository(conn).lock_lapsed(RECONCILE_BATCH)
            lapsed = [_lapsed_end(res, row) for row in rows]
            return await record_ends(conn, lapsed, *caps) if lapsed else []

    recovered = await retry_deadlocks(recover)
    for run in recovered:
        log.warning("lease lapsed; job recovered", extra={"job_id": str(run.job_id), "status": run.status})
    # A recovered run frees its slots in every cap it was in: the jobs those caps held start now.
    await requeue_after(res.pool, res.queue, recovered)
    return len(recovered)


async def reconcile(res: Resources) -> ReconcileReport:
    """Recover running jobs whose lease lapsed, and re-enqueue waiting jobs Redis does not hold."""
    report = ReconcileReport(recovered=await recover_lapsed(res))
    s = res.settings
    async with res.pool.acquire() as conn, conn.transaction():
        if not await try_xact_lock(conn, RECONCILE_LOCK):
            return report
        waiting = await JobRepository(conn).due_waiting(
            s.reconcile_grace_seconds,
            RECONCILE_BATCH,
            s.queue_horizon_seconds,
            s.max_running_jobs_per_key,
            s.type_concurrency,
        )
    await forget_dead_workers(res)
    held = await res.queue.held([(row["id"], row["attempts"]) for row in waiting])
    for row, is_held in zip(waiting, held, strict=True):
        if not is_held and await res.queue.enqueue(Delivery.from_row(row)):
            report.requeued += 1
    if report.requeued:
        log.info("re-enqueued jobs Redis had lost", extra={"count": report.requeued})
    return report
