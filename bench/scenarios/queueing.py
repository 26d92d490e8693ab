"""Scenarios 1 and 2: end-to-end throughput of no-op jobs, and submit → start latency.

Every system runs the same sequence: one worker process, warm-up, N jobs (throughput), paced jobs
(low-load latency), a burst (backlog latency); then a second worker process, warm-up, N jobs again;
then, workers stopped, N jobs queued and one fresh worker timed emptying the queue (the worker alone).
The throughput clock starts when the first job is sent and stops when the last one has finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.context import Context
from bench.report import Row, median, pcts, percentile
from bench.systems import ArqSystem, CelerySystem, JobSystem, PlatformSystem, Submitted

TARGET_DEFAULT = 5.0  # ≥ 5x raw arq with default settings
TARGET_TUNED = 0.5  # ≥ 50% of raw arq tuned like our worker
TARGET_LOW_LOAD_P50_S = 0.020


@dataclass
class Figures:
    """What one system measured."""

    label: str  # short, for tags
    name: str  # for people
    rate: dict[int, float] = field(default_factory=dict)  # workers → jobs/s
    cpu: dict[int, str] = field(default_factory=dict)  # workers → CPU use during the run
    submit_rate: dict[int, float] = field(default_factory=dict)
    drain: float = 0.0  # jobs/s of one worker emptying a full queue
    low_load: list[float] = field(default_factory=list)  # submit → start, seconds
    backlog: list[float] = field(default_factory=list)


async def _throughput(system: JobSystem, ctx: Context, tag: str) -> tuple[float, float, str]:
    n = ctx.sizes.e2e_jobs
    meter = ctx.meter(lambda: system.workers)
    meter.start()
    submitted = await system.submit(n, ctx.sizes.clients, tag)
    last = await system.wait_done(tag, n)
    cpu = meter.describe(meter.stop())
    return n / (last - submitted.first_sent), n / submitted.elapsed, cpu


async def _warm(system: JobSystem, ctx: Context, tag: str) -> None:
    await system.submit(ctx.sizes.warmup_jobs, ctx.sizes.clients, tag)
    await system.wait_done(tag, ctx.sizes.warmup_jobs)


async def _latencies(system: PlatformSystem | ArqSystem, submitted: Submitted, tag: str) -> list[float]:
    starts = await system.start_times(tag)
    return [starts[job_id] - returned for job_id, returned in submitted.returned.items()]


async def _probe(system: PlatformSystem | ArqSystem, ctx: Context, figures: Figures) -> None:
    s = ctx.sizes
    tag = f"{figures.label}-low"
    paced = await system.submit_paced(s.low_load_jobs, s.low_load_gap_s, tag)
    await _wait_started(system, tag, s.low_load_jobs)
    figures.low_load = await _latencies(system, paced, tag)
    tag = f"{figures.label}-backlog"
    burst = await system.submit(s.backlog_jobs, s.clients, tag, probe=True)
    await _wait_started(system, tag, s.backlog_jobs)
    figures.backlog = await _latencies(system, burst, tag)


async def _wait_started(system: PlatformSystem | ArqSystem, tag: str, n: int) -> None:
    if isinstance(system, ArqSystem):
        await system.wait_started(tag, n)
    else:
        await system.wait_done(tag, n)


async def measure(system: JobSystem, ctx: Context, short: str) -> Figures:
    """The whole sequence for one system."""
    figures = Figures(short, system.label)
    try:
        for workers in (1, 2):
            await system.add_worker()
            await _warm(system, ctx, f"{short}-warm{workers}")
            rate, submit_rate, cpu = await _throughput(system, ctx, f"{short}-tp{workers}")
            figures.rate[workers], figures.submit_rate[workers] = rate, submit_rate
            figures.cpu[workers] = cpu
            ctx.log(
                f"{system.label}, {workers} worker(s): {rate:.0f} jobs/s (submitted at {submit_rate:.0f}/s)"
            )
            if workers == 1 and isinstance(system, PlatformSystem | ArqSystem):
                await _probe(system, ctx, figures)
                ctx.log(f"{system.label}: submit → start p50/p95/p99 low {pcts(figures.low_load)}")
        system.stop_workers()
        if isinstance(system, PlatformSystem | ArqSystem):
            figures.drain = await system.drain(ctx.sizes.e2e_jobs, ctx.sizes.clients, f"{short}-drain")
            ctx.log(f"{system.label}: one worker drains a full queue at {figures.drain:.0f} jobs/s")
    finally:
        system.stop_workers()
    return figures


async def run(ctx: Context) -> None:
    """Scenarios 1 and 2 for the platform and every baseline."""
    ours = await measure(PlatformSystem(ctx.platform, ctx.db), ctx, "platform")
    default = await measure(ArqSystem(ctx.servers, ctx.procs, "default"), ctx, "arq-default")
    tuned = await measure(ArqSystem(ctx.servers, ctx.procs, "tuned"), ctx, "arq-tuned")
    celery = await measure(CelerySystem(ctx.servers, ctx.procs), ctx, "celery")
    _throughput_rows(ctx, ours, default, tuned, celery)
    _latency_rows(ctx, ours, default, tuned)


def _throughput_rows(ctx: Context, ours: Figures, default: Figures, tuned: Figures, celery: Figures) -> None:
    baselines = (
        (default, "raw arq, default settings", f"≥ {TARGET_DEFAULT:g}x", TARGET_DEFAULT),
        (tuned, "raw arq, tuned like our worker", f"≥ {TARGET_TUNED:g}x", TARGET_TUNED),
        (celery, "Celery 5 + Redis (prefork, 1 child per worker)", "> 1x", 1.0),
    )
    for workers in (1, 2):
        for figures, label, target, floor in baselines:
            ratio = ours.rate[workers] / figures.rate[workers]
            ctx.report.add(
                Row(
                    "1",
                    f"end-to-end no-op jobs/s, {workers} worker process{'es' if workers > 1 else ''}",
                    f"{ours.rate[workers]:.0f} jobs/s",
                    f"{label}: {figures.rate[workers]:.0f} jobs/s",
                    ratio,
                    target,
                    ratio > floor if floor == 1.0 else ratio >= floor,
                    key="e2e",
                )
            )
    for figures in (default, tuned):
        ratio = ours.drain / figures.drain
        ctx.report.add(
            Row(
                "1",
                "worker alone: 1 worker drains a full queue of no-op jobs",
                f"{ours.drain:.0f} jobs/s",
                f"{figures.name}: {figures.drain:.0f} jobs/s",
                ratio,
            )
        )
    n = ctx.sizes.e2e_jobs
    note = ctx.report.note
    note(
        "1 End-to-end throughput",
        f"{n} jobs per run, {ctx.sizes.clients} concurrent submitters; warm-up first.",
    )
    for figures in (ours, default, tuned, celery):
        subs = ", ".join(f"{w} worker(s): {r:.0f}/s" for w, r in figures.submit_rate.items())
        note("1 End-to-end throughput", f"{figures.name} submission rate alone: {subs}")
    for figures in (ours, default, tuned, celery):
        for workers, cpu in figures.cpu.items():
            note("1 End-to-end throughput", f"CPU, {figures.name}, {workers} worker(s): {cpu}")


def _latency_rows(ctx: Context, ours: Figures, default: Figures, tuned: Figures) -> None:
    for load, attr in (("low load", "low_load"), ("backlog", "backlog")):
        mine: list[float] = getattr(ours, attr)
        for figures, label in ((default, "raw arq, default"), (tuned, "raw arq, tuned")):
            theirs: list[float] = getattr(figures, attr)
            p50 = percentile(mine, 50)
            low = load == "low load" and figures is default
            ctx.report.add(
                Row(
                    "2",
                    f"submit → start p50/p95/p99, {load}",
                    pcts(mine),
                    f"{label}: {pcts(theirs)}",
                    p50 / percentile(theirs, 50),
                    f"p50 ≤ {TARGET_LOW_LOAD_P50_S * 1000:g} ms" if low else "",
                    p50 <= TARGET_LOW_LOAD_P50_S if low else None,
                    key="latency" if low else "",
                )
            )
    s = ctx.sizes
    ctx.report.note(
        "2 Submit → start latency",
        f"low load: {s.low_load_jobs} jobs one at a time, {s.low_load_gap_s * 1000:g} ms apart; backlog: "
        f"{s.backlog_jobs} jobs at once from {s.clients} submitters; 1 worker process. Ours: POST returned → "
        "the row's started_at; raw arq: enqueue_job returned → the job's first line.",
    )
    ctx.report.note(
        "2 Submit → start latency",
        f"medians: ours {median(ours.low_load) * 1000:.1f} ms low load, "
        f"{median(ours.backlog) * 1000:.1f} ms backlog",
    )
