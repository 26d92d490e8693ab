"""Purge: expired terminal jobs and their files, expired idempotency keys, orphan files, old /stats
rollups, expired dashboard sessions, batches whose jobs are all gone; in batches. Purging jobs never
changes the rollups: they were counted when created and ended."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict, dataclass

from backend.repo.batches import BatchRepository
from backend.repo.idempotency import IdempotencyRepository
from backend.repo.jobs import JobRepository
from backend.repo.sessions import SessionRepository
from backend.resources import Resources
from backend.services.locks import PURGE_LOCK, try_xact_lock
from backend.services.stats import expire_stats

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """What one purge removed (or, in a dry run, would remove)."""

    jobs: int = 0
    files: int = 0
    idempotency_keys: int = 0
    orphan_files: int = 0
    stats_rows: int = 0  # rollup and histogram rows past STATS_RETENTION_DAYS
    ui_sessions: int = 0  # dashboard sign-ins past their expiry
    dry_run: bool = False
    batches: int = 0  # rounds of the job purge
    empty_batches: int = 0  # batches (POST /batches) past the retention whose jobs are all purged


async def _purge_jobs(res: Resources, report: PurgeReport) -> None:
    s, jobs = res.settings, JobRepository(res.pool)
    retention_s = s.job_retention_days * 86400
    while True:
        batch = await jobs.expired_terminal(retention_s, s.purge_batch_size)
        if report.dry_run:
            report.jobs = len(batch)
            report.files = sum(1 for r in batch if r["result_file"])
            return
        gone = set(await jobs.delete_expired([r["id"] for r in batch], retention_s))
        for row in batch:
            if row["id"] in gone and row["result_file"]:
                report.files += await _delete_files(res, row["id"])
        report.jobs += len(gone)
        report.batches += 1
        if len(batch) < s.purge_batch_size:
            return
        await asyncio.sleep(0)  # let other work in this process run between batches


async def _purge_idempotency(res: Resources, report: PurgeReport) -> None:
    ttl, size = res.settings.idempotency_ttl_hours * 3600, res.settings.purge_batch_size
    keys = IdempotencyRepository(res.pool)
    if report.dry_run:
        report.idempotency_keys = await keys.count_expired(ttl)
        return
    while (removed := await keys.delete_expired(ttl, size)) > 0:
        report.idempotency_keys += removed
        if removed < size:
            return


async def _delete_files(res: Resources, job_id: uuid.UUID) -> int:
    """Delete a job's files; a failure is logged, not raised (a marked folder is swept again later)."""
    try:
        return await res.storage.delete_job_files(job_id)
    except OSError as exc:
        log.warning("job files not deleted", extra={"job_id": str(job_id), "error": repr(exc)})
        return 0


async def _purge_orphans(res: Resources, report: PurgeReport) -> None:
    """Files this deployment wrote whose job row no longer exists (a crash between row and file
    deletion); folders that other deployments sharing the store wrote are never listed, so never touched.
    """
    stored = await res.storage.job_ids()
    size = res.settings.purge_batch_size
    for start in range(0, len(stored), size):
        chunk: list[uuid.UUID] = stored[start : start + size]
        alive = await JobRepository(res.pool).existing_ids(chunk)
        for job_id in set(chunk) - alive:
            report.orphan_files += 1 if report.dry_run else await _delete_files(res, job_id)


async def _purge_batches(res: Resources, report: PurgeReport) -> None:
    s, batches = res.settings, BatchRepository(res.pool)
    while (removed := await batches.delete_empty(s.job_retention_days * 86400, s.purge_batch_size)) > 0:
        report.empty_batches += removed
        if removed < s.purge_batch_size:
            return


async def purge(res: Resources, *, dry_run: bool = False) -> PurgeReport:
    """Delete expired terminal jobs with their files, expired idempotency keys, orphan files, and /stats
    rollups past their retention."""
    report = PurgeReport(dry_run=dry_run)
    async with res.pool.acquire() as conn, conn.transaction():
        if not await try_xact_lock(conn, PURGE_LOCK, guard_idle=False):
            return report
        await _purge_jobs(res, report)
        await _purge_idempotency(res, report)
        await _purge_orphans(res, report)
        if not dry_run:
            report.stats_rows = await expire_stats(res.pool, res.settings.stats_retention_days)
            report.ui_sessions = await SessionRepository(res.pool).delete_expired()
            await _purge_batches(res, report)
    log.info("purge done", extra=asdict(report))
    return report
