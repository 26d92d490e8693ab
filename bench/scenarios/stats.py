"""Scenario 7: GET /stats with a million jobs in the table, against GET /health (the floor).

The jobs are seeded with one `INSERT ... SELECT generate_series` (spread over the last 7 days, most of them
ended), which fires the insert trigger: a million `created` events. The stats duty (`refresh_stats`, run
here in the bench process on its own pool, as a worker's cron would) drains them before anything is
measured; how long that takes is reported. Runs with no worker process, last, so nothing else moves.
"""

from __future__ import annotations

import time

from backend.db.pool import create_pool
from backend.services.stats import refresh_stats
from bench.context import Context
from bench.http import build_request
from bench.report import Row
from bench.scenarios.api_load import latency_text, load

TARGET_SHARE = 0.3
# Tags for GET /jobs?tag=: COMMON_TAG on 10 % of the jobs, RARE_TAG on 0.01 % (100 of a million), both spread
# over the whole week; besides those, a third of the jobs carry no tag, a third one `team-*` (40 of them),
# a third a `team-*` and an `env-*` (5).
COMMON_TAG, RARE_TAG = "nightly", "incident-42"
TAG_SHARES = {COMMON_TAG: "10 %", RARE_TAG: "0.01 %"}
# Ended jobs of four types over the last 7 days; 1 in 1000 still waiting (the live gauges read those).
SEED = """
    INSERT INTO jobs (id, owner_id, type, payload, status, created_at, scheduled_at, started_at, finished_at,
                      attempts, tags)
    SELECT gen_random_uuid(), $1, (ARRAY['sleep', 'square_sum', 'cube_sum', 'csv_report'])[1 + i % 4],
           '{}'::jsonb,
           CASE WHEN i % 1000 = 0 THEN 'pending' WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END,
           t, t, CASE WHEN i % 1000 <> 0 THEN t + interval '50 ms' END,
           CASE WHEN i % 1000 <> 0 THEN t + interval '300 ms' END, 1,
           array_remove(ARRAY[CASE WHEN i % 3 <> 0 THEN 'team-' || (i % 40) END,
                              CASE WHEN i % 3 = 2 THEN 'env-' || (i % 5) END,
                              CASE WHEN i % 10 = 3 THEN $3 END,
                              CASE WHEN i % 10000 = 7 THEN $4 END], NULL)
    FROM generate_series(1, $2) AS i, LATERAL (SELECT now() - (i % 604800) * interval '1 second' AS t) AS c
"""


async def run(ctx: Context) -> None:
    """Seed, drain the events, then load /health, /stats?window=24h, /stats?window=7d and GET /jobs?tag= (a
    rare tag, then a common one) in turn."""
    ctx.platform.stop_workers()
    n = ctx.sizes.stats_jobs
    owner = await ctx.db.fetchval("SELECT id FROM api_keys WHERE name = 'bootstrap'")
    started = time.monotonic()
    await ctx.db.execute(SEED, owner, n, COMMON_TAG, RARE_TAG)
    seeded_s = time.monotonic() - started
    # As autovacuum would soon: the planner's estimates for `tags @> ...` come from these statistics.
    await ctx.db.execute("ANALYZE jobs")
    ctx.log(f"seeded {n:,} jobs in {seeded_s:.1f} s")
    pool = await create_pool(ctx.servers.db_url, 2)
    try:
        started, ticks = time.monotonic(), 0
        while not (await refresh_stats(pool, budget_s=3600)).drained:
            ticks += 1
        drain_s = time.monotonic() - started
        started = time.monotonic()
        await refresh_stats(pool)  # no event left: the live gauges alone, from a 1M-row table
        gauges_ms = (time.monotonic() - started) * 1000
    finally:
        await pool.close()
    rollups = await ctx.db.fetchval("SELECT count(*) FROM stats_rollups")
    ctx.log(f"drained {n:,} events in {drain_s:.1f} s ({n / drain_s:,.0f}/s); {rollups:,} rollup rows")

    health_request = build_request("GET", "/health")
    health = await load(ctx, lambda _: health_request)
    health.require(200)
    floor = f"GET /health: {health.rate:.0f} req/s, {latency_text(health)}"
    ctx.log(floor)
    for window in ("24h", "7d"):
        request = build_request("GET", f"/stats?window={window}", ctx.headers)
        result = await load(ctx, lambda _, r=request: r)
        result.require(200)
        ctx.log(f"GET /stats?window={window}: {result.rate:.0f} req/s, {latency_text(result)}")
        share = result.rate / health.rate
        target = window == "24h"
        ctx.report.add(
            Row(
                "7",
                f"GET /stats?window={window} throughput, {n:,} jobs, {ctx.sizes.clients} clients",
                f"{result.rate:.0f} req/s, {latency_text(result)}",
                floor,
                share,
                f"≥ {TARGET_SHARE:g}x" if target else "",
                share >= TARGET_SHARE if target else None,
            )
        )
        ctx.report.note("7 GET /stats", f"CPU during GET /stats?window={window}: {result.cpu}")
    for label, tag in (("rare", RARE_TAG), ("common", COMMON_TAG)):
        request = build_request("GET", f"/jobs?tag={tag}&limit=20", ctx.headers)
        result = await load(ctx, lambda _, r=request: r)
        result.require(200)
        ctx.log(f"GET /jobs?tag={tag}: {result.rate:.0f} req/s, {latency_text(result)}")
        ctx.report.add(
            Row(
                "7",
                f"GET /jobs?tag= ({label} tag, {TAG_SHARES[tag]} of jobs) first page of 20, {n:,} jobs, "
                f"{ctx.sizes.clients} clients",
                f"{result.rate:.0f} req/s, {latency_text(result)}",
                floor,
                result.rate / health.rate,
            )
        )
        ctx.report.note("7 GET /stats", f"CPU during GET /jobs?tag={tag}: {result.cpu}")
    ctx.report.note(
        "7 GET /stats",
        f"{n:,} jobs seeded with one INSERT ... SELECT in {seeded_s:.1f} s; the stats duty drained their "
        f"{n:,} created events in {drain_s:.1f} s ({n / drain_s:,.0f} events/s, {rollups:,} rollup rows); "
        f"a tick with no event (live gauges only) took {gauges_ms:.0f} ms. Read as the bootstrap (admin) "
        "key: every owner's rollups.",
    )
