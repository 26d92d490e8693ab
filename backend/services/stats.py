"""Job statistics: the duty that folds job events into rollups, their retention, and the `/stats` view."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from backend.db.pool import Executor
from backend.domain.job_types import SPECS
from backend.domain.stats import (
    ALL_OWNERS,
    ALL_TYPES,
    GRAINS,
    Counts,
    LiveGauges,
    StatsBucket,
    StatsView,
    StatsWindow,
    TypeStats,
)
from backend.repo.stats import StatsRepository
from backend.services.locks import STATS_LOCK, try_xact_lock

log = logging.getLogger(__name__)

FOLD_BATCH = 50_000  # events per transaction
FOLD_BUDGET_S = 20.0  # a tick stops after this long; the next one goes on where it stopped
# The minute grain only serves the 1h window: a day of it is plenty, and it is 60x the hour grain's rows.
MINUTE_GRAIN_KEEP = timedelta(days=1)


@dataclass
class StatsReport:
    """What one stats tick did."""

    events: int = 0
    batches: int = 0
    skipped: bool = False  # another worker held the lock
    drained: bool = False  # no event was left (False: the time budget ran out first)


async def refresh_stats(
    pool: asyncpg.Pool, *, batch: int = FOLD_BATCH, budget_s: float = FOLD_BUDGET_S
) -> StatsReport:
    """Fold queued job events into the rollups, a batch per transaction, then refresh the live gauges.

    One worker at a time (an advisory lock per transaction): two folds would be exact anyway (an event is
    deleted by one of them only), but could deadlock on the buckets they both add to.
    """
    report, deadline = StatsReport(), time.monotonic() + budget_s
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await try_xact_lock(conn, STATS_LOCK):
                report.skipped = True
                return report
            stats = StatsRepository(conn)
            folded = await stats.fold_events(batch)
            await stats.update_percentiles(folded)
            report.drained = folded.events < batch
            done = report.drained or time.monotonic() >= deadline
            if done:
                await stats.refresh_now()
        report.events += folded.events
        report.batches += 1
        if done:
            if not report.drained:
                log.warning(
                    "stats fold ran out of time; the rest waits for the next tick", extra=_extra(report)
                )
            return report


def _extra(report: StatsReport) -> dict[str, object]:
    return {"events": report.events, "batches": report.batches}


async def expire_stats(pool: Executor, retention_days: float) -> int:
    """Delete rollup buckets past retention (the minute grain's after a day); how many rows went."""
    now = datetime.now(UTC)
    keep = timedelta(days=retention_days)
    stats, removed = StatsRepository(pool), 0
    for grain in GRAINS:
        removed += await stats.expire(grain, now - (min(keep, MINUTE_GRAIN_KEEP) if grain == 1 else keep))
    return removed


async def stats_view(
    pool: Executor, *, owner_id: uuid.UUID | None, window: StatsWindow, job_type: str | None
) -> StatsView:
    """Counts and latencies per bucket over the window, per type, and the live gauges, from the rollups.

    `owner_id` None: every owner's jobs. Reads at most `window.bucket_count` rollup rows, plus as many per
    job type, plus two gauge rows.
    """
    owner, type_key = owner_id or ALL_OWNERS, job_type or ALL_TYPES
    starts = window.bucket_starts(datetime.now(UTC))
    first, last = starts[0], starts[-1]
    stats = StatsRepository(pool)
    stored = {r["bucket"]: r for r in await stats.buckets(window.grain, owner, type_key, first, last)}
    buckets = [_bucket(start, stored.get(start)) for start in starts]
    types = [job_type] if job_type else list(SPECS)
    by_type = {
        r["type"]: _type_stats(r) for r in await stats.by_type(window.grain, owner, types, first, last)
    }
    gauges = await stats.now(owner, type_key)
    totals = Counts()
    for bucket in buckets:
        totals.add(bucket)
    return StatsView(
        window=window,
        bucket_seconds=window.bucket_seconds,
        type=job_type,
        as_of=gauges["as_of"],
        buckets=buckets,
        totals=totals,
        by_type=by_type,
        now=LiveGauges(
            pending=gauges["pending"], running=gauges["running"], oldest_wait_seconds=gauges["oldest_wait_s"]
        ),
    )


def _bucket(start: datetime, row: asyncpg.Record | None) -> StatsBucket:
    # Constructed, not validated: the values come typed from our own table, and a 7d view has 168 of them
    # (validation was a quarter of the request's CPU).
    if row is None:
        return StatsBucket.model_construct(start=start, **EMPTY_BUCKET)
    return StatsBucket.model_construct(start=start, **{k: v for k, v in row.items() if k != "bucket"})


EMPTY_BUCKET = {name: f.default for name, f in StatsBucket.model_fields.items() if name != "start"}


def _type_stats(row: asyncpg.Record) -> TypeStats:
    ended = row["completed"] + row["failed"]
    rate = row["failed"] / ended if ended else None
    counts = {k: int(row[k]) for k in ("created", "completed", "failed", "cancelled")}
    return TypeStats(**counts, failure_rate=rate)


ViewKey = tuple[uuid.UUID | None, StatsWindow, str | None]


@dataclass
class ViewCache:
    """The API's rendered views, kept `ttl_s` per (owner, window, type) in one process; concurrent misses
    of one key share one computation.

    Measured necessary: without it GET /stats?window=24h served 0.05-0.13x GET /health's requests (the
    API process CPU-bound building 96-168 buckets), the same views asked for again and again by
    dashboards. Rollups move every STATS_INTERVAL_SECONDS anyway; a second more is not noticeable.
    """

    ttl_s: float = 1.0
    max_entries: int = 10_000
    entries: dict[ViewKey, tuple[float, asyncio.Future[bytes]]] = field(default_factory=dict)

    async def get(self, key: ViewKey, render: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached rendering of `key`, or a fresh one from `render`."""
        now = time.monotonic()
        hit = self.entries.get(key)
        if hit is None or hit[0] <= now:
            if len(self.entries) >= self.max_entries:
                self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
            future = asyncio.ensure_future(render())
            future.add_done_callback(lambda done: self._forget_failed(key, done))
            hit = self.entries[key] = (now + self.ttl_s, future)
        return await asyncio.shield(hit[1])

    def _forget_failed(self, key: ViewKey, done: asyncio.Future[bytes]) -> None:
        if (done.cancelled() or done.exception() is not None) and self.entries.get(key, (0, None))[1] is done:
            del self.entries[key]
