"""The stats duty: job events (written by triggers) become rollups exactly once, whatever happens to jobs.

Jobs are run by real workers through the API, or moved through their statuses with SQL (to place them at
chosen times); the duty and the view run on the test's own pool, as the worker and the API run them.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from backend.core.config import Settings
from backend.db.pool import create_pool
from backend.domain.stats import ALL_OWNERS, StatsView, StatsWindow
from backend.services.purge import purge
from backend.services.stats import StatsReport, expire_stats, refresh_stats, stats_view
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for

BIN_TOLERANCE = 0.125  # a percentile reads as its bin's geometric middle: within ±12 % of the value


async def fold_all(pool: asyncpg.Pool, **kwargs: Any) -> list[StatsReport]:
    """Run the duty until it has drained every event (a worker's cron may hold the lock meanwhile)."""
    reports = []
    for _ in range(200):
        report = await refresh_stats(pool, **kwargs)
        reports.append(report)
        if report.drained:
            return reports
        await asyncio.sleep(0.05)
    raise AssertionError(f"events not drained: {reports[-3:]}")


async def owner_of(settings: Settings, job_id: str) -> uuid.UUID:
    owner: uuid.UUID = (
        await db.fetch(settings, "SELECT owner_id FROM jobs WHERE id = $1", uuid.UUID(job_id))
    )[0][0]
    return owner


def counts(view: StatsView) -> tuple[int, int, int, int]:
    t = view.totals
    return t.created, t.completed, t.failed, t.cancelled


async def test_jobs_run_by_workers_are_counted_once_each(stack: Stack, client: Any) -> None:
    done = [await submit(client, "sleep", {"seconds": 0}) for _ in range(3)]
    failing = await submit(client, "sleep", {"seconds": 0, "fail_first": 1}, max_attempts=1)
    later = await submit(client, "sleep", {"seconds": 0}, scheduled_at="2999-01-01T00:00:00Z")
    for job in done:
        await wait_for(client, job["id"], {"completed"})
    await wait_for(client, failing["id"], {"failed"})
    owner = await owner_of(stack.settings, later["id"])

    async with db.pool(stack.settings) as pool:
        await fold_all(pool)
        view = await stats_view(pool, owner_id=owner, window=StatsWindow.HOUR, job_type=None)
        assert counts(view) == (5, 3, 1, 0)
        assert (view.now.pending, view.now.running, view.now.oldest_wait_seconds) == (1, 0, 0)
        assert (await client.post(f"/jobs/{later['id']}/cancel")).status_code == 202
        await fold_all(pool)
        view = await stats_view(pool, owner_id=owner, window=StatsWindow.HOUR, job_type=None)

    assert counts(view) == (5, 3, 1, 1)
    assert view.now.pending == 0
    assert view.by_type["sleep"].model_dump() == {
        "created": 5,
        "completed": 3,
        "failed": 1,
        "cancelled": 1,
        "failure_rate": 0.25,
    }
    assert len(view.buckets) == 60 and view.bucket_seconds == 60
    ended = [b for b in view.buckets if b.completed or b.failed]
    assert ended and all(b.wait_p50 is not None and b.run_p95 is not None for b in ended)
    assert view.as_of is not None


async def test_a_failed_job_run_again_counts_failed_then_completed(stack: Stack, client: Any) -> None:
    job = await submit(client, "sleep", {"seconds": 0, "fail_first": 1}, max_attempts=1)
    await wait_for(client, job["id"], {"failed"})
    # The same job, fixed: its next first attempt succeeds.
    await db.execute(
        stack.settings,
        "UPDATE jobs SET payload = '{\"seconds\": 0}'::jsonb WHERE id = $1",
        uuid.UUID(job["id"]),
    )
    assert (await client.post(f"/jobs/{job['id']}/retry")).status_code == 202
    await wait_for(client, job["id"], {"completed"})
    owner = await owner_of(stack.settings, job["id"])
    async with db.pool(stack.settings) as pool:
        await fold_all(pool)
        view = await stats_view(pool, owner_id=owner, window=StatsWindow.DAY, job_type="sleep")
    assert counts(view) == (1, 1, 1, 0)
    assert view.type == "sleep" and view.bucket_seconds == 900 and len(view.buckets) == 96


INSERT_JOBS = """
    INSERT INTO jobs (id, owner_id, type, payload, created_at, scheduled_at)
    SELECT gen_random_uuid(), $1, $2, '{}'::jsonb, $3, $3 FROM generate_series(1, $4)
    RETURNING id
"""
# Ends jobs as a worker would, at chosen times: started `wait` after creation, ended `run` after the start.
END_JOBS = """
    UPDATE jobs SET status = $2, started_at = created_at + make_interval(secs => $3),
           finished_at = created_at + make_interval(secs => $3 + $4)
    WHERE id = ANY($1::uuid[])
"""


async def new_owner(pool: asyncpg.Pool) -> uuid.UUID:
    owner: uuid.UUID = await pool.fetchval(
        "INSERT INTO api_keys (id, name, key_hash) VALUES (gen_random_uuid(), 'o', md5(random()::text)) "
        "RETURNING id"
    )
    return owner


async def add_jobs(
    pool: asyncpg.Pool, owner: uuid.UUID, n: int, at: datetime, job_type: str = "sleep"
) -> list[uuid.UUID]:
    return [r["id"] for r in await pool.fetch(INSERT_JOBS, owner, job_type, at, n)]


async def end_jobs(
    pool: asyncpg.Pool, ids: list[uuid.UUID], status: str, wait_s: float, run_s: float
) -> None:
    await pool.execute(END_JOBS, ids, status, wait_s, run_s)


def near(value: float | None, expected: float) -> bool:
    return value is not None and abs(value / expected - 1) <= BIN_TOLERANCE


async def test_latencies_land_in_their_bins(isolated: Any) -> None:
    async with isolated(workers=0) as stack, db.pool(stack.settings) as pool:
        bins = await pool.fetch(
            "SELECT jp_stats_bin(s) FROM unnest($1::float8[]) s", [0.0, 0.00099, 0.001, 1.0, 1.2, 100.0, 1e9]
        )
        assert [r[0] for r in bins] == [0, 0, 1, 31, 31, 51, 90]
        owner = await new_owner(pool)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        at = hour + timedelta(minutes=10)  # everything below ends within this hour
        fast, slow = await add_jobs(pool, owner, 94, at), await add_jobs(pool, owner, 6, at)
        await end_jobs(pool, fast, "completed", 2.0, 0.5)
        await end_jobs(pool, slow, "failed", 30.0, 600.0)
        await fold_all(pool)
        week = await stats_view(pool, owner_id=owner, window=StatsWindow.WEEK, job_type=None)
        day = await stats_view(pool, owner_id=owner, window=StatsWindow.DAY, job_type="sleep")

    bucket = next(b for b in week.buckets if b.start == hour)
    assert (bucket.created, bucket.completed, bucket.failed) == (100, 94, 6)
    assert near(bucket.wait_p50, 2.0) and near(bucket.wait_p95, 30.0)  # 94 % at 2 s: p95 is in the 30 s bin
    assert near(bucket.run_p50, 0.5) and near(bucket.run_p95, 600.0)
    first_quarter = next(b for b in day.buckets if b.start == hour)  # the fast ones only
    assert (first_quarter.created, first_quarter.completed, first_quarter.failed) == (100, 94, 0)
    assert near(first_quarter.wait_p95, 2.0) and near(first_quarter.run_p95, 0.5)
    assert counts(day) == counts(week) == (100, 94, 6, 0)


async def test_concurrent_folds_never_count_twice(isolated: Any) -> None:
    async with isolated(workers=0) as stack, db.pool(stack.settings) as setup:
        owners = [await new_owner(setup) for _ in range(3)]
        at = datetime.now(UTC) - timedelta(minutes=5)
        types = ("sleep", "cube_sum")
        ids = [await add_jobs(setup, owner, 3000, at, job_type) for owner in owners for job_type in types]
        for chunk in ids:
            await end_jobs(setup, chunk[:1000], "completed", 0.5, 0.1)
            await end_jobs(setup, chunk[1000:1500], "failed", 0.5, 0.1)
        pools = [await create_pool(stack.settings.require_database_url(), 2) for _ in range(3)]
        try:
            for _ in range(100):
                reports = await asyncio.gather(*(refresh_stats(p, batch=700) for p in pools))
                left = await setup.fetchval("SELECT count(*) FROM stats_events")
                if any(r.drained for r in reports) and not left:
                    break
        finally:
            for p in pools:
                await p.close()
        view = await stats_view(setup, owner_id=None, window=StatsWindow.HOUR, job_type=None)
        per_type = await stats_view(setup, owner_id=owners[0], window=StatsWindow.DAY, job_type="cube_sum")
    assert counts(view) == (18000, 6000, 3000, 0)
    assert {t: (s.created, s.completed, s.failed) for t, s in view.by_type.items()} == {
        "cube_sum": (9000, 3000, 1500),
        "sleep": (9000, 3000, 1500),
    }
    assert counts(per_type) == (3000, 1000, 500, 0)
    assert math.isclose(view.by_type["sleep"].failure_rate or 0, 1 / 3)


async def test_purging_jobs_keeps_their_counts_and_old_buckets_expire(isolated: Any) -> None:
    async with isolated(workers=0, job_retention_days=0, stats_retention_days=30) as stack:
        async with db.pool(stack.settings) as pool:
            owner = await new_owner(pool)
            ids = await add_jobs(pool, owner, 50, datetime.now(UTC) - timedelta(minutes=3))
            await end_jobs(pool, ids[:40], "completed", 0.1, 0.1)
            await end_jobs(pool, ids[40:], "cancelled", 0.1, 0.1)
            await fold_all(pool)
            before = await stats_view(pool, owner_id=owner, window=StatsWindow.HOUR, job_type=None)
            old = datetime.now(UTC) - timedelta(days=31)
            await pool.execute(
                "INSERT INTO stats_rollups (grain, owner_id, type, bucket, created) VALUES "
                "(60, $1, '', $2, 1), (15, $1, '', $2, 1), (1, $1, '', $3, 1), (60, $1, '', $3, 1)",
                ALL_OWNERS,
                old,
                datetime.now(UTC) - timedelta(days=2),
            )
        async with db.resources(stack.settings) as res:
            report = await purge(res)
        async with db.pool(stack.settings) as pool:
            await fold_all(pool)
            after = await stats_view(pool, owner_id=owner, window=StatsWindow.HOUR, job_type=None)
            left = await pool.fetch(
                "SELECT grain, bucket FROM stats_rollups WHERE bucket < now() - interval '1 day'"
            )
            assert await expire_stats(pool, 30) == 0
    assert report.jobs == 50 and report.stats_rows == 3
    assert counts(before) == counts(after) == (50, 40, 0, 10)
    assert before.buckets == after.buckets
    assert [r["grain"] for r in left] == [60]  # the hour grain's 2-day-old bucket stays


async def test_a_job_created_cancelled_counts_its_end(isolated: Any) -> None:
    """A child submitted after its parent was cancelled is inserted `cancelled`: created and cancelled."""
    async with isolated(workers=0) as stack, await stack.client() as client:
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        parent = await submit(client, "square_sum", {"data": [1]}, scheduled_at=later)
        assert (await client.post(f"/jobs/{parent['id']}/cancel")).status_code == 202
        child = await submit(client, "square_sum", {"data": [1]}, depends_on=[parent["id"]])
        assert child["status"] == "cancelled"
        owner = await owner_of(stack.settings, child["id"])
        async with db.pool(stack.settings) as pool:
            await fold_all(pool)
            view = await stats_view(pool, owner_id=owner, window=StatsWindow.HOUR, job_type=None)
    assert counts(view) == (2, 0, 0, 2)
