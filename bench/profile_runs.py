"""The workloads `--profile` replays under py-spy: issue 15's always (end-to-end worker and API, the worker
alone draining, POST /jobs under load), and the workload of every other kind of missed target."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bench.context import Context
from bench.http import build_request, download, run_load
from bench.profiling import Recorder, summarize
from bench.stack import Proc
from bench.systems import PlatformSystem


@contextlib.asynccontextmanager
async def recording(ctx: Context, procs: dict[str, Proc], title: str, out: list[str]) -> AsyncIterator[None]:
    """py-spy on each process for the duration of the block; summaries appended to `out`."""
    folder = ctx.run_dir / "profiles"
    folder.mkdir(exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", title)
    recorders = {name: Recorder(p, folder / f"{stem}-{name}.txt") for name, p in procs.items()}
    await asyncio.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        for name, recorder in recorders.items():
            raw = await asyncio.to_thread(recorder.stop)
            out += summarize(raw, f"{title}: {name} process", recorder.seconds, recorder.rate)


async def _e2e(ctx: Context, out: list[str]) -> None:
    system = PlatformSystem(ctx.platform, ctx.db)
    worker = await ctx.platform.spawn_worker()
    assert ctx.platform.api is not None
    try:
        await system.submit(ctx.sizes.warmup_jobs, ctx.sizes.clients, "profile-warm")
        await system.wait_done("profile-warm", ctx.sizes.warmup_jobs)
        async with recording(ctx, {"API": ctx.platform.api, "worker": worker}, "end-to-end no-op jobs", out):
            await system.submit(ctx.sizes.e2e_jobs, ctx.sizes.clients, "profile-e2e")
            await system.wait_done("profile-e2e", ctx.sizes.e2e_jobs)
        ctx.platform.stop_workers()
        # The worker alone: a full queue, drained by a fresh worker.
        await system.submit(ctx.sizes.e2e_jobs, ctx.sizes.clients, "profile-drain")
        worker = await ctx.platform.spawn_worker()
        async with recording(ctx, {"worker": worker}, "one worker draining a full queue", out):
            await system.wait_done("profile-drain", ctx.sizes.e2e_jobs)
    finally:
        ctx.platform.stop_workers()


async def _latency(ctx: Context, out: list[str]) -> None:
    system = PlatformSystem(ctx.platform, ctx.db)
    worker = await ctx.platform.spawn_worker()
    assert ctx.platform.api is not None
    try:
        n = ctx.sizes.low_load_jobs
        async with recording(ctx, {"API": ctx.platform.api, "worker": worker}, "low-load submit-start", out):
            await system.submit_paced(n, ctx.sizes.low_load_gap_s, "profile-low")
            await system.wait_done("profile-low", n)
    finally:
        ctx.platform.stop_workers()


async def _post(ctx: Context, out: list[str]) -> None:
    assert ctx.platform.api is not None
    request = build_request("POST", "/jobs", ctx.headers, {"type": "sleep", "payload": {"seconds": 0}})
    async with recording(ctx, {"API": ctx.platform.api}, "POST /jobs under load", out):
        await run_load(
            ctx.platform.port, ctx.sizes.clients, lambda _: request, duration=ctx.sizes.profile_seconds
        )


async def _csv(ctx: Context, out: list[str]) -> None:
    worker = await ctx.platform.spawn_worker()
    try:
        async with recording(ctx, {"worker": worker}, "csv_report job", out):
            rows = ctx.sizes.csv_inprocess_rows * 2
            job = await ctx.post_job({"type": "csv_report", "payload": {"rows": rows, "seed": 3}})
            await ctx.wait_job(job["id"])
    finally:
        ctx.platform.stop_workers()


async def _download(ctx: Context, out: list[str]) -> None:
    from bench.scenarios.csv_gen import report_job

    job = await report_job(ctx, ctx.sizes.download_rows, seed=4)
    assert ctx.platform.api is not None
    path = f"/jobs/{job.id}/download"
    async with recording(ctx, {"API": ctx.platform.api}, "download", out):
        deadline = time.monotonic() + ctx.sizes.profile_seconds
        while time.monotonic() < deadline:
            await asyncio.to_thread(download, ctx.platform.port, path, ctx.headers)


async def _batches(ctx: Context, out: list[str]) -> None:
    from bench.scenarios import batches

    assert ctx.platform.api is not None
    headers, owner = await batches.new_key(ctx, "profile-batches")
    request = build_request("POST", "/batches", headers, batches.BATCH_BODY)
    try:
        async with recording(ctx, {"API": ctx.platform.api}, "POST /batches under load", out):
            await run_load(
                ctx.platform.port, ctx.sizes.clients, lambda _: request, duration=ctx.sizes.profile_seconds
            )
    finally:
        await batches.purge(ctx, [owner])


async def _webhooks(ctx: Context, out: list[str]) -> None:
    """The sender sending a full outbox."""
    from bench.scenarios import webhooks

    n = ctx.sizes.webhook_jobs
    receiver = webhooks.Receiver(ctx)
    try:
        await receiver.ready()
        owner, _ = await webhooks.held_outbox(ctx, receiver, n)
        await ctx.db.execute(webhooks.HOLD_ALL, owner)  # not due until the profile runs
        worker = await ctx.platform.spawn_worker()
        title = "webhook sender"
        async with recording(ctx, {"worker": worker}, title, out):
            await ctx.db.execute(webhooks.REDELIVER_ALL, owner)
            await webhooks.wait_delivered(ctx, owner, n, worker)
    finally:
        ctx.platform.stop_workers()
        receiver.stop()


async def _rss(ctx: Context, out: list[str]) -> None:
    out += [
        "### peak RSS",
        "",
        "not a CPU question: see the VmHWM figures in Details; no py-spy profile.",
        "",
    ]


WORKLOADS: dict[str, Callable[[Context, list[str]], Awaitable[None]]] = {
    "e2e": _e2e,
    "latency": _latency,
    "post": _post,
    "csv": _csv,
    "download": _download,
    "rss": _rss,
    "batches": _batches,
    "webhooks": _webhooks,
}


# Profiled in every run (issue 15's workloads) when the run measured them, met or not.
ALWAYS = ("e2e", "post")


async def profile_workloads(ctx: Context) -> None:
    """Profile issue 15's workloads and every kind of target the run missed; the summaries go into the
    report, after a line saying what was profiled and how long it took."""
    measured = {r.key for r in ctx.report.rows if r.key}
    missed = ctx.report.missed()
    keys = sorted(missed | (measured & set(ALWAYS)))
    started = time.monotonic()
    lines: list[str] = []
    for key in keys:
        ctx.log(f"profiling: {key}")
        at = time.monotonic()
        try:
            await WORKLOADS[key](ctx, lines)
        except Exception as exc:  # a failed profile must not lose the measured figures
            lines.append(f"profiling {key} failed: {exc!r}")
        ctx.log(f"profiled {key} in {time.monotonic() - at:.0f} s")
    if not keys:
        return
    why = ", ".join(f"{k} ({'missed' if k in missed else 'always'})" for k in keys)
    ctx.report.profiles += [
        f"py-spy (`record --gil --nonblocking`, 250 Hz) on each process while its workload ran again after "
        f"the measurements: {why}; {time.monotonic() - started:.0f} s in all. The e2e workload is "
        f"{ctx.sizes.e2e_jobs} no-op jobs POSTed by {ctx.sizes.clients} connections and run by 1 worker "
        f"process (API and worker recorded), then the same number drained by a fresh worker from a full "
        f"queue; post is {ctx.sizes.profile_seconds:g} s of POST /jobs from {ctx.sizes.clients} connections "
        "with no worker. The profiles before issue 15's work are in [PROFILE_BEFORE.md](PROFILE_BEFORE.md).",
        "",
        *lines,
    ]
