"""Scenario 8: fair dispatch. A light key's jobs while a heavy key floods the queue, and what priorities and
concurrency keys cost end to end.

Fair share: two keys, `fair_workers` worker processes. First the light key alone submits `fair_light_jobs`
no-op jobs one at a time, `fair_light_gap_s` apart (calm). Then the heavy key's backlog is seeded: rows by
one `INSERT ... SELECT unnest(...)`, deliveries by the platform's own `Queue.enqueue_many` with the owner and
priority the API would give them (so the fair-share tags are the API's), while the workers already drain it.
During that flood another light key submits the same paced sequence. A light job's wait is its row's
`started_at - created_at`. After each light POST the bench reads the delivery's rank in the queue, which
shows the ordering itself.

Priorities and caps: scenario 1's end-to-end run (N no-op jobs POSTed by `clients` connections, 1 worker
process, until all completed), plain and with a random priority (-10..10) and one of 50 concurrency keys
(limit 5) on every job, alternated `dispatch_rounds` times on the same worker.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

from arq.connections import ArqRedis

from backend.adapters.queue import Queue, connect, delivery_id
from backend.core.ids import uuid7
from backend.domain.payloads import SleepPayload
from backend.domain.records import Delivery
from bench.context import Context
from bench.http import Connection, build_request
from bench.report import Row, median, percentile
from bench.stack import BenchError, wait_until
from bench.systems import NOOP, PlatformSystem

TARGET_FLOODED_P99_S = 1.0
TARGET_DISPATCH_SHARE = 0.8
CONCURRENCY_KEYS = 50
CONCURRENCY_LIMIT = 5
SEED_CHUNK = 1000  # deliveries per enqueue_many (one pipelined round trip each)
SEED = """
    INSERT INTO jobs (id, owner_id, type, payload, max_attempts, scheduled_at)
    SELECT unnest($1::uuid[]), $2, 'sleep', $3::jsonb, $4, now()
"""
WAITS = "SELECT extract(epoch FROM started_at - created_at) FROM jobs WHERE owner_id = $1"
ACTIVE = "SELECT 1 FROM jobs WHERE owner_id = $1 AND status NOT IN ('completed', 'failed', 'cancelled')"
DRAINED = (
    "SELECT count(*), extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)) "
    "FROM jobs WHERE owner_id = $1 AND status = 'completed'"
)
HEAVY = "fair-heavy"


def _waits_text(waits: list[float]) -> str:
    return "/".join(f"{percentile(waits, q) * 1000:.0f}" for q in (50, 99)) + " ms"


async def run(ctx: Context) -> None:
    """Fair share under a flood, then end-to-end throughput with and without priorities and caps."""
    system = PlatformSystem(ctx.platform, ctx.db)
    try:
        await _fair_share(ctx, system)
    finally:
        system.stop_workers()
    try:
        await _priorities_and_caps(ctx, system)
    finally:
        system.stop_workers()


async def _light(
    ctx: Context, system: PlatformSystem, tag: str, queue: Queue
) -> tuple[list[float], list[int]]:
    """The light key's paced jobs; their waits (started_at - created_at) and each delivery's queue rank
    right after its POST returned (None once it finished: not counted)."""
    s = ctx.sizes
    request = build_request("POST", "/jobs", {"X-API-Key": await system.new_key(tag)}, NOOP)
    conn = Connection(ctx.platform.port)
    ranks: list[int] = []
    try:
        for _ in range(s.fair_light_jobs):
            status, body = await conn.request(request)
            if status != 201:
                raise BenchError(f"POST /jobs answered {status}: {body[:200]!r}")
            rank = await queue.redis.zrank(queue.name, delivery_id(uuid.UUID(json.loads(body)["id"]), 0))
            if rank is not None:
                ranks.append(int(rank))
            await asyncio.sleep(s.fair_light_gap_s)
    finally:
        await conn.close()
    await system.wait_done(tag, s.fair_light_jobs)
    waits = [float(r[0]) for r in await ctx.db.fetch(WAITS, system.owners[tag])]
    return waits, ranks


async def _seed_flood(ctx: Context, system: PlatformSystem, queue: Queue, n: int) -> tuple[float, float]:
    """The heavy key's backlog of `n` no-op jobs: rows, then deliveries as the API would enqueue them.
    Returns the seconds each took."""
    payload = SleepPayload.model_validate(NOOP["payload"]).model_dump(mode="json")  # what the API stores
    owner = system.owners[HEAVY]
    ids = [uuid7() for _ in range(n)]
    started = time.monotonic()
    await ctx.db.execute(SEED, ids, owner, json.dumps(payload), ctx.setting("default_max_attempts"))
    inserted = time.monotonic()
    for at in range(0, n, SEED_CHUNK):
        chunk = [Delivery(job_id, 0, None, owner, 0) for job_id in ids[at : at + SEED_CHUNK]]
        if await queue.enqueue_many(chunk) != len(chunk):
            raise BenchError("enqueue_many did not add every delivery of the flood")
    return inserted - started, time.monotonic() - inserted


async def _cancel_rest(ctx: Context, system: PlatformSystem, key: str) -> int:
    """Cancel the heavy key's waiting jobs through the API (rows and deliveries), then wait until its
    running ones ended: the flood has served its purpose, draining it would only cost time."""
    conn = Connection(ctx.platform.port)
    try:
        request = build_request("POST", "/jobs/bulk/cancel", {"X-API-Key": key}, {"status": ["pending"]})
        status, body = await conn.request(request)
    finally:
        await conn.close()
    if status != 200:
        raise BenchError(f"POST /jobs/bulk/cancel answered {status}: {body[:200]!r}")
    owner = system.owners[HEAVY]
    await wait_until(
        lambda: ctx.db.fetchval(f"SELECT NOT EXISTS ({ACTIVE})", owner), "the heavy key's jobs to end"
    )
    return int(json.loads(body)["changed"])


async def _fair_share(ctx: Context, system: PlatformSystem) -> None:
    s = ctx.sizes
    redis: ArqRedis = await connect(ctx.servers.redis_url)
    queue = Queue(
        redis,
        ctx.setting("queue_name"),
        ctx.setting("queue_horizon_seconds"),
        ctx.setting("lease_seconds"),
    )
    try:
        for _ in range(s.fair_workers):
            await system.add_worker()
        await system.submit(s.warmup_jobs, s.clients, "fair-warm")
        await system.wait_done("fair-warm", s.warmup_jobs)
        calm, _ = await _light(ctx, system, "fair-calm", queue)
        ctx.log(f"light key alone: wait p50/p99 {_waits_text(calm)}")

        heavy_key = await system.new_key(HEAVY)
        insert_s, enqueue_s = await _seed_flood(ctx, system, queue, s.fair_heavy_jobs)
        depth = int(await redis.zcard(queue.name))
        ctx.log(
            f"flood: {s.fair_heavy_jobs:,} jobs seeded (rows {insert_s:.2f} s, deliveries "
            f"{enqueue_s:.2f} s), {depth:,} in the queue"
        )
        flooded, ranks = await _light(ctx, system, "fair-flooded", queue)
        left = await _cancel_rest(ctx, system, heavy_key)
        ctx.log(
            f"light key during the flood: wait p50/p99 {_waits_text(flooded)}; ranks in the queue up to "
            f"{max(ranks, default=0)}; {left:,} heavy jobs still waiting after the light ones (cancelled)"
        )
        done, first, last = await ctx.db.fetchrow(DRAINED, system.owners[HEAVY])
        heavy_rate = done / float(last - first)
        slots = s.fair_workers * ctx.setting("worker_concurrency")
        turn = slots / heavy_rate
    finally:
        await redis.aclose()

    p50, p99 = percentile(flooded, 50), percentile(flooded, 99)
    ctx.report.add(
        Row(
            "8",
            f"light key's wait p50/p99 while a heavy key's {s.fair_heavy_jobs:,} jobs flood the queue, "
            f"{s.fair_workers} worker processes",
            _waits_text(flooded),
            f"the light key alone: {_waits_text(calm)}",
            p50 / percentile(calm, 50),
            f"p99 ≤ {TARGET_FLOODED_P99_S:g} s",
            p99 <= TARGET_FLOODED_P99_S,
        )
    )
    note = ctx.report.note
    title = "8 Fair dispatch"
    note(
        title,
        f"light key: {s.fair_light_jobs} no-op jobs one at a time, {s.fair_light_gap_s * 1000:g} ms apart, "
        f"wait = the row's started_at - created_at; alone first, then during the flood (a new key each). The "
        f"heavy key's {s.fair_heavy_jobs:,} no-op jobs were seeded (rows by one INSERT in {insert_s:.2f} s, "
        f"deliveries by Queue.enqueue_many in {enqueue_s:.2f} s) with {s.fair_workers} workers already "
        f"draining them; {depth:,} were in the queue when the light key started, {left:,} still waiting "
        "when its jobs had all run (then cancelled by POST /jobs/bulk/cancel).",
    )
    note(
        title,
        f"each light delivery's rank in the queue right after its POST: median {median(ranks):.0f}, max "
        f"{max(ranks, default=0)} ({len(ranks)} of {s.fair_light_jobs} still queued or running then). "
        f"The heavy key drained at {heavy_rate:.0f} jobs/s, so first-come-first-served would have made a "
        f"light job wait about {depth / heavy_rate:.1f} s. One turn of a worker slot under the flood "
        f"({slots} slots ÷ that rate, a no-op's time in a saturated worker) was {turn * 1000:.0f} ms: the "
        f"light key's p50/p99 were {p50 / turn:.1f}/{p99 / turn:.1f} of it.",
    )


def _dispatch_bodies(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            **NOOP,
            "priority": rng.randint(-10, 10),
            "concurrency_key": f"k{rng.randrange(CONCURRENCY_KEYS)}",
            "concurrency_limit": CONCURRENCY_LIMIT,
        }
        for _ in range(n)
    ]


async def _rate(ctx: Context, system: PlatformSystem, tag: str, bodies: list[dict[str, Any]]) -> float:
    n = ctx.sizes.e2e_jobs
    submitted = await system.submit(n, ctx.sizes.clients, tag, bodies=bodies)
    last = await system.wait_done(tag, n)
    return n / (last - submitted.first_sent)


async def _priorities_and_caps(ctx: Context, system: PlatformSystem) -> None:
    s = ctx.sizes
    await system.add_worker()
    await system.submit(s.warmup_jobs, s.clients, "dispatch-warm")
    await system.wait_done("dispatch-warm", s.warmup_jobs)
    plain: list[float] = []
    dispatch: list[float] = []
    for i in range(s.dispatch_rounds):
        plain.append(await _rate(ctx, system, f"dispatch-plain{i}", []))
        dispatch.append(await _rate(ctx, system, f"dispatch-fields{i}", _dispatch_bodies(s.e2e_jobs, i)))
        ctx.log(f"round {i + 1}: plain {plain[-1]:.0f} jobs/s, with the fields {dispatch[-1]:.0f} jobs/s")
    ours, base = sum(dispatch) / len(dispatch), sum(plain) / len(plain)
    ratio = ours / base
    ctx.report.add(
        Row(
            "8",
            "end-to-end no-op jobs/s with a random priority and concurrency key (limit "
            f"{CONCURRENCY_LIMIT}, {CONCURRENCY_KEYS} keys) on every job, 1 worker process",
            f"{ours:.0f} jobs/s",
            f"the same jobs without: {base:.0f} jobs/s",
            ratio,
            f"≥ {TARGET_DISPATCH_SHARE:g}x",
            ratio >= TARGET_DISPATCH_SHARE,
        )
    )
    rounds = ", ".join(f"{p:.0f} / {d:.0f}" for p, d in zip(plain, dispatch, strict=True))
    ctx.report.note(
        "8 Fair dispatch",
        f"priorities and caps: {s.e2e_jobs} jobs per run from {s.clients} submitters, one key with no "
        f"max_running; plain and with the fields alternated on one worker, {s.dispatch_rounds} round(s), "
        f"means reported; jobs/s plain / with, per round: {rounds}.",
    )
