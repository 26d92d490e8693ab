"""Cron work: reconcile PostgreSQL with Redis, and purge what has outlived its retention."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backend.repo.idempotency import IdempotencyRepository
from backend.repo.jobs import JobRepository
from backend.services.dispatch import delivery_id
from worker.runtime import Runtime

log = logging.getLogger(__name__)

RECONCILE_LOCK = 0x6A6F6273_0001  # pg advisory lock ids: "jobs" + n
PURGE_LOCK = 0x6A6F6273_0002
RECONCILE_BATCH = 1000
RECONCILE_IDLE_LIMIT_MS = 5_000


async def _try_lock(session: AsyncSession, key: int) -> bool:
    """A transaction-scoped advisory lock: one reconcile (or purge) at a time across all workers."""
    return bool((await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})).scalar())


async def _guard_against_frozen_holder(session: AsyncSession) -> None:
    """If this process freezes mid-transaction (SIGSTOP, a stalled VM), PostgreSQL ends its session, so the
    reconcile lock cannot be held hostage and recovery goes on in the other workers."""
    await session.execute(
        text(f"SET LOCAL idle_in_transaction_session_timeout = '{RECONCILE_IDLE_LIMIT_MS}'")
    )


@dataclass
class ReconcileReport:
    """What one reconcile pass did."""

    recovered: int = 0
    requeued: int = 0


async def _missing_from_redis(rt: Runtime, rows: list[Any]) -> list[Any]:
    """The rows whose current delivery is neither queued nor in progress in Redis."""
    if not rows:
        return []
    async with rt.dispatcher.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            arq_id = delivery_id(row.id, row.attempts)
            pipe.exists(job_key_prefix + arq_id, in_progress_key_prefix + arq_id)
        found = await pipe.execute()
    return [row for row, n in zip(rows, found, strict=True) if not n]


async def reconcile(rt: Runtime) -> ReconcileReport:
    """Recover running jobs whose lease lapsed, and re-enqueue waiting jobs Redis does not hold."""
    report = ReconcileReport()
    async with rt.sessions() as session:
        await _guard_against_frozen_holder(session)
        if not await _try_lock(session, RECONCILE_LOCK):
            return report
        repo = JobRepository(session)
        lapsed = await repo.recover_lapsed(RECONCILE_BATCH)
        waiting = await repo.due_waiting(rt.settings.reconcile_grace_seconds, RECONCILE_BATCH)
        await session.commit()
    report.recovered = len(lapsed)
    for row in lapsed:
        log.warning("lease lapsed; job recovered", extra={"job_id": str(row.id), "status": row.status})
        if row.status == "retrying":
            await rt.dispatcher.enqueue(row.id, row.attempts, row.scheduled_at)
    for row in await _missing_from_redis(rt, waiting):
        if await rt.dispatcher.enqueue(row.id, row.attempts, row.scheduled_at):
            report.requeued += 1
    if report.requeued:
        log.info("re-enqueued jobs Redis had lost", extra={"count": report.requeued})
    return report


@dataclass
class PurgeReport:
    """What one purge removed (or, in a dry run, would remove)."""

    jobs: int = 0
    files: int = 0
    idempotency_keys: int = 0
    orphan_files: int = 0
    dry_run: bool = False
    batches: int = field(default=0)


async def _purge_jobs(rt: Runtime, report: PurgeReport) -> None:
    s = rt.settings
    while True:
        async with rt.sessions() as session:
            batch = await JobRepository(session).expired_terminal(s.job_retention_days, s.purge_batch_size)
            if report.dry_run:
                report.jobs = len(batch)
                report.files = sum(1 for r in batch if r.result_file)
                return
            for row in batch:
                if row.result_file:
                    report.files += await rt.storage.delete_job_files(row.id)
            report.jobs += await JobRepository(session).delete_ids([r.id for r in batch])
            await session.commit()
        report.batches += 1
        if len(batch) < s.purge_batch_size:
            return
        await asyncio.sleep(0)  # let other work in this process run between batches


async def _purge_idempotency(rt: Runtime, report: PurgeReport) -> None:
    ttl = rt.settings.idempotency_ttl_hours * 3600
    while True:
        async with rt.sessions() as session:
            repo = IdempotencyRepository(session)
            if report.dry_run:
                report.idempotency_keys = await repo.count_expired(ttl)
                return
            removed = await repo.delete_expired(ttl, rt.settings.purge_batch_size)
            await session.commit()
        report.idempotency_keys += removed
        if removed < rt.settings.purge_batch_size:
            return


async def _purge_orphans(rt: Runtime, report: PurgeReport) -> None:
    """Files whose job row no longer exists (a crash between file and row deletion, or a stray)."""
    stored = await rt.storage.job_ids()
    for start in range(0, len(stored), rt.settings.purge_batch_size):
        chunk: list[uuid.UUID] = stored[start : start + rt.settings.purge_batch_size]
        async with rt.sessions() as session:
            alive = await JobRepository(session).existing_ids(chunk)
        for job_id in set(chunk) - alive:
            report.orphan_files += 1 if report.dry_run else await rt.storage.delete_job_files(job_id)


async def purge(rt: Runtime, *, dry_run: bool = False) -> PurgeReport:
    """Delete expired terminal jobs with their files, expired idempotency keys, and orphan files."""
    report = PurgeReport(dry_run=dry_run)
    async with rt.sessions() as session:
        if not await _try_lock(session, PURGE_LOCK):
            return report
        await _purge_jobs(rt, report)
        await _purge_idempotency(rt, report)
        await _purge_orphans(rt, report)
    log.info("purge done", extra=report.__dict__)
    return report
