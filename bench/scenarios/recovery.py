"""Scenario 6: seconds from SIGKILL of a worker mid-job to the job running again (median of several).

Two worker processes; a long `sleep` job starts on one of them; that process is SIGKILLed and a
replacement spawned at once. The clock stops at the `started_at` of the job's next run (job_runs),
whichever worker takes it. Recovery waits for the lease to lapse by design, so the lease is the
baseline: the ratio shows how much the reconcile cron and re-delivery add on top of it.
"""

from __future__ import annotations

import asyncio
import time

from backend.core.config import Settings
from bench.context import Context
from bench.http import build_request, run_load
from bench.report import Row, median
from bench.stack import BenchError, Proc, wait_until

LONG_JOB = {"type": "sleep", "payload": {"seconds": 600}, "name": "bench-recovery"}


async def _running_on(ctx: Context, job_id: str) -> Proc:
    async def holder() -> Proc | None:
        worker_id = await ctx.db.fetchval(
            "SELECT worker_id FROM jobs WHERE id = $1::uuid AND status = 'running'", job_id
        )
        if worker_id is None:
            return None
        pid = int(worker_id.split(":")[-2])
        return next((w for w in ctx.platform.workers if w.pid == pid), None)

    proc: Proc = await wait_until(holder, f"job {job_id} to start", within=60)
    return proc


async def _next_run_started(ctx: Context, job_id: str, within: float) -> float:
    async def started() -> float | None:
        value = await ctx.db.fetchval(
            "SELECT extract(epoch FROM started_at) FROM job_runs WHERE job_id = $1::uuid AND attempt = 2",
            job_id,
        )
        return None if value is None else float(value)

    at: float = await wait_until(started, f"job {job_id} to run again", within=within)
    return at


async def _trial(ctx: Context, overrides: dict[str, str], within: float) -> float:
    job = await ctx.post_job(LONG_JOB)
    victim = await _running_on(ctx, job["id"])
    await asyncio.sleep(0.5)  # well into the job, a heartbeat or so in
    killed_at = time.time()
    victim.kill()
    ctx.platform.workers.remove(victim)
    replacement = asyncio.create_task(ctx.platform.spawn_worker(**overrides))
    try:
        seconds = await _next_run_started(ctx, job["id"], within) - killed_at
    finally:
        await replacement
    cancel = build_request("POST", f"/jobs/{job['id']}/cancel", ctx.headers)
    (await run_load(ctx.platform.port, 1, lambda _: cancel, count=1)).require(202)
    return seconds


async def run(ctx: Context) -> None:
    overrides = ctx.sizes.recovery_settings
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in overrides.items()})
    lease, every = settings.lease_seconds, settings.reconcile_every_seconds
    within = lease + every + settings.heartbeat_seconds + 30
    for _ in range(2):
        await ctx.platform.spawn_worker(**overrides)
    times: list[float] = []
    try:
        for trial in range(ctx.sizes.recovery_trials):
            times.append(await _trial(ctx, overrides, within))
            ctx.log(f"recovery trial {trial + 1}: {times[-1]:.2f} s")
    finally:
        ctx.platform.stop_workers()
    if not times:
        raise BenchError("no recovery trial ran")
    mid = median(times)
    ctx.report.add(
        Row(
            "6",
            f"crash recovery: SIGKILL → running again, median of {len(times)}",
            f"{mid:.2f} s",
            f"lease_seconds: {lease:g} s",
            mid / lease,
        )
    )
    ctx.report.note(
        "6 Crash recovery",
        f"trials: {', '.join(f'{t:.2f}' for t in times)} s; lease {lease:g} s, heartbeat "
        f"{settings.heartbeat_seconds:g} s, reconcile every {every} s. Expected about lease - time since "
        "the last heartbeat + up to one reconcile interval.",
    )
