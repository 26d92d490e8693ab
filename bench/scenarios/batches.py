"""Scenario 9: jobs/s accepted by `POST /batches` (1,000 no-op jobs a request) against single `POST /jobs`.

Both sides run the same way: `clients` keep-alive connections, each sending its next request as soon as
the last one is answered, a fixed number of requests (a few seconds' worth each), the same no-op job
(`sleep` 0 s), each side with an API key of its own after a short warm-up under a third key. The two
sides alternate `batch_rounds` times and each side's rate is its jobs over its seconds in all rounds, so
that a burst of load from elsewhere on the machine weighs on both rather than on whichever ran then. No
worker process runs, so nothing drains the queue or competes for the CPU while the API accepts; with its
own key, each side's per-key waiting count (which the quota check re-reads every second) starts from zero.
Then the latency of a batch request alone (one connection, one request at a time). Afterwards every job
the scenario made goes (rows by SQL, deliveries by the platform's own `Queue.discard`), so that the
scenarios after it find neither its rows, nor its waiting jobs, nor its stats events.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from arq.connections import ArqRedis

from backend.adapters.queue import Queue, connect
from backend.domain.batches import MAX_BATCH_JOBS
from backend.services.auth import create_key
from bench.context import Context
from bench.http import LoadResult, build_request, run_load
from bench.report import Row, percentile
from bench.scenarios.api_load import latency_text
from bench.stack import CpuMeter
from bench.systems import NOOP

TARGET_SHARE = 10.0
BATCH_JOBS = MAX_BATCH_JOBS
WARMUP_SINGLE = 200
WARMUP_BATCHES = 2
BATCH_BODY = {"jobs": [NOOP] * BATCH_JOBS}
PURGE = (
    "DELETE FROM jobs WHERE owner_id = ANY($1::uuid[])",
    "DELETE FROM batches WHERE owner_id = ANY($1::uuid[])",
    "DELETE FROM stats_events WHERE owner_id = ANY($1::uuid[])",
)


async def new_key(ctx: Context, name: str) -> tuple[dict[str, str], uuid.UUID]:
    raw = f"jp_bench_{name}_{uuid.uuid4().hex}"
    _, owner = await create_key(ctx.db, f"bench-{name}", raw)
    return {"X-API-Key": raw}, owner


async def _load(ctx: Context, clients: int, request: bytes, count: int) -> LoadResult:
    result = await run_load(ctx.platform.port, clients, lambda _: request, count=count)
    result.require(201)
    return result


def _merged(results: list[LoadResult]) -> LoadResult:
    out = LoadResult()
    for r in results:
        out.latencies += r.latencies
        out.statuses.update(r.statuses)
        out.elapsed += r.elapsed
    return out


class _Cpu:
    """CPU shares over several phases, weighted by their wall time."""

    def __init__(self, ctx: Context) -> None:
        self.meter = ctx.meter()
        self.seconds: dict[str, float] = {}
        self.wall = 0.0

    async def measure(self, phase: Awaitable[LoadResult]) -> LoadResult:
        self.meter.start()
        result = await phase
        for name, share in self.meter.stop().items():
            self.seconds[name] = self.seconds.get(name, 0.0) + share * result.elapsed
        self.wall += result.elapsed
        return result

    def describe(self) -> str:
        return CpuMeter.describe({k: v / self.wall for k, v in self.seconds.items()})


async def run(ctx: Context) -> None:
    ctx.platform.stop_workers()
    s = ctx.sizes
    (warm, warm_owner), (single_key, single_owner), (batch_key, batch_owner) = [
        await new_key(ctx, name) for name in ("batch-warm", "batch-single", "batch-many")
    ]
    owners = [warm_owner, single_owner, batch_owner]
    single_request = build_request("POST", "/jobs", single_key, NOOP)
    batch_request = build_request("POST", "/batches", batch_key, BATCH_BODY)
    rounds = s.batch_rounds
    singles: list[LoadResult] = []
    batches: list[LoadResult] = []
    single_cpu, batch_cpu = _Cpu(ctx), _Cpu(ctx)
    try:
        await _load(ctx, s.clients, build_request("POST", "/jobs", warm, NOOP), WARMUP_SINGLE)
        await _load(ctx, s.clients, build_request("POST", "/batches", warm, BATCH_BODY), WARMUP_BATCHES)
        for _ in range(rounds):
            single = await single_cpu.measure(
                _load(ctx, s.clients, single_request, s.batch_single_jobs // rounds)
            )
            ctx.log(f"POST /jobs: {single.rate:.0f} jobs/s, {latency_text(single)}")
            singles.append(single)
            batch = await batch_cpu.measure(_load(ctx, s.clients, batch_request, s.batch_requests // rounds))
            ctx.log(
                f"POST /batches: {batch.rate * BATCH_JOBS:.0f} jobs/s ({batch.rate:.1f} req/s), "
                f"{latency_text(batch)}"
            )
            batches.append(batch)
        alone = await _load(ctx, 1, batch_request, s.batch_alone_requests)
        ctx.log(f"POST /batches, one at a time: {latency_text(alone)}")

        stored = await ctx.db.fetchval(
            "SELECT count(*) FROM jobs WHERE owner_id = $1 AND status = 'pending'", batch_owner
        )
        expected = (sum(b.count for b in batches) + alone.count) * BATCH_JOBS
        if stored != expected:
            ctx.report.failures.append(f"scenario 9: {stored} batch jobs stored, {expected} expected")
    finally:
        removed = await purge(ctx, owners)
        ctx.log(f"removed the scenario's {removed:,} jobs")

    single, batch = _merged(singles), _merged(batches)
    single_rate, batch_rate = single.rate, batch.rate * BATCH_JOBS
    share = batch_rate / single_rate
    ctx.report.add(
        Row(
            "9",
            f"jobs/s accepted by POST /batches ({BATCH_JOBS:,} no-op jobs a request), {s.clients} clients",
            f"{batch_rate:.0f} jobs/s, {latency_text(batch)} a request",
            f"POST /jobs, one job a request: {single_rate:.0f} jobs/s, {latency_text(single)}",
            share,
            f"≥ {TARGET_SHARE:g}x",
            share >= TARGET_SHARE,
            key="batches",
            goal="batches",
            brief=f"{batch_rate:.0f} vs {single_rate:.0f} jobs/s ({share:.2f}x)",
        )
    )
    title = "9 Batch submission"
    note = ctx.report.note
    per_round = ", ".join(
        f"{a.rate:.0f} vs {b.rate * BATCH_JOBS:.0f}" for a, b in zip(singles, batches, strict=True)
    )
    note(
        title,
        f"{s.clients} keep-alive connections each side, closed loop (the next request once the last is "
        f"answered), the sides alternated {rounds} time(s): POST /jobs {single.count:,} requests in "
        f"{single.elapsed:.1f} s; POST /batches {batch.count} requests of {BATCH_JOBS:,} jobs "
        f"({batch.count * BATCH_JOBS:,} jobs) in {batch.elapsed:.1f} s; jobs/s per round, single vs batch: "
        f"{per_round}. Same no-op job, an API key of its own each side, no worker running (the jobs wait "
        "in the queue; nothing drains it), then every job the scenario made is deleted.",
    )
    note(
        title,
        f"a batch request alone (1 connection, {alone.count} requests): {latency_text(alone)}, i.e. "
        f"{BATCH_JOBS / percentile(alone.latencies, 50):.0f} jobs/s from a single client; under "
        f"{s.clients} clients a request shares the API with {s.clients - 1} others in flight, hence the "
        "latency in the table",
    )
    note(title, f"CPU during POST /jobs: {single_cpu.describe()}")
    note(title, f"CPU during POST /batches: {batch_cpu.describe()}")


async def purge(ctx: Context, owners: list[uuid.UUID]) -> int:
    """Delete the scenario's jobs, batches and stats events, and their deliveries from Redis."""
    rows = await ctx.db.fetch("SELECT id, attempts FROM jobs WHERE owner_id = ANY($1::uuid[])", owners)
    redis: ArqRedis = await connect(ctx.servers.redis_url)
    try:
        queue = Queue(
            redis,
            ctx.setting("queue_name"),
            ctx.setting("queue_horizon_seconds"),
            ctx.setting("lease_seconds"),
        )
        deliveries = [(r["id"], r["attempts"]) for r in rows]
        for at in range(0, len(deliveries), 10_000):
            await queue.discard(deliveries[at : at + 10_000])
    finally:
        await redis.aclose()
    async with ctx.db.transaction():
        for sql in PURGE:
            await ctx.db.execute(sql, owners)
    return len(rows)
