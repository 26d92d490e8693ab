"""Reconcile: recover runs whose worker vanished, and put back on the queue what Redis lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from backend.domain.lifecycle import Ending, RunState, decide
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


async def reconcile(res: Resources) -> ReconcileReport:
    """Recover running jobs whose lease lapsed, and re-enqueue waiting jobs Redis does not hold."""
    report = ReconcileReport()
    async with res.pool.acquire() as conn, conn.transaction():
        if not await try_xact_lock(conn, RECONCILE_LOCK):
            return report
        repo = JobRepository(conn)
        lapsed = [_lapsed_end(res, row) for row in await repo.lock_lapsed(RECONCILE_BATCH)]
        s = res.settings
        cap = s.max_running_jobs_per_key
        recovered = await record_ends(conn, lapsed, cap) if lapsed else []
        waiting = await repo.due_waiting(
            s.reconcile_grace_seconds, RECONCILE_BATCH, s.queue_horizon_seconds, cap
        )
    await forget_dead_workers(res)
    report.recovered = len(recovered)
    for run in recovered:
        log.warning("lease lapsed; job recovered", extra={"job_id": str(run.job_id), "status": run.status})
    await requeue_after(res.pool, res.queue, recovered)
    held = await res.queue.held([(row["id"], row["attempts"]) for row in waiting])
    for row, is_held in zip(waiting, held, strict=True):
        if not is_held and await res.queue.enqueue(row["id"], row["attempts"], row["scheduled_at"]):
            report.requeued += 1
    if report.requeued:
        log.info("re-enqueued jobs Redis had lost", extra={"count": report.requeued})
    return report
