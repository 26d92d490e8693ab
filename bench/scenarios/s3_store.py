"""Scenario 11: scenario 4's csv_report jobs and scenario 5's download on an S3-compatible store (moto),
each against the same measure on the local folder, in the same run.

A moto server process holds the bucket; a second API process (and its workers) runs with
`RESULTS_URL=s3://bench-bucket/prefix`, a third with presigned downloads on. The run's first API and its
workers are the local side. Only one side's worker runs at a time (both consume the same queue), and the
sides alternate, their order swapped each round, so load from elsewhere weighs on both. No target: moto is
a Python process on this machine, not AWS, so the ratios say what the S3 code path costs here, not what
S3 would do.
"""

from __future__ import annotations

import os
import statistics

from bench.context import Context
from bench.report import Row, median
from bench.s3 import MotoS3
from bench.scenarios.csv_gen import ReportJob, report_job
from bench.scenarios.download import http_download
from bench.stack import BenchError, CpuMeter, Platform, family
from bench.systems import PlatformSystem

BUCKET, PREFIX = "bench-bucket", "prefix"
MB = 1024 * 1024
NAME = "11 S3 store"


async def _small_jobs(ctx: Context, tag: str) -> float:
    """jobs/s of one fresh worker draining a queue of small csv_report jobs (one PutObject each on S3)."""
    s = ctx.sizes
    body = {"type": "csv_report", "payload": {"rows": s.s3_small_rows, "seed": 6}}
    try:
        return await PlatformSystem(ctx.platform, ctx.db).drain(
            s.s3_small_jobs, s.clients, tag, bodies=[body]
        )
    finally:
        ctx.platform.stop_workers()


def _meter(ctx: Context, moto: MotoS3) -> CpuMeter:
    api = ctx.platform.api
    return CpuMeter(
        {
            "API": lambda: [api.pid] if api and api.alive() else [],
            "moto": lambda: family(moto.proc.pid),
            "bench client": lambda: [os.getpid()],
        }
    )


async def _metered(ctx: Context, moto: MotoS3, job: ReportJob, follow: bool = False) -> tuple[float, str]:
    """One download's bytes/s and the CPU shares of the processes serving it."""
    meter = _meter(ctx, moto)
    meter.start()
    rate = await http_download(ctx, job.id, job.file["size_bytes"], follow=follow)
    return rate, CpuMeter.describe(meter.stop())


def _rows(n: float) -> str:
    return f"{n:,.0f} rows/s"


def _mbs(rates: list[float]) -> str:
    return ", ".join(f"{r / MB:.0f}" for r in rates) + " MB/s"


async def run(ctx: Context) -> None:
    s = ctx.sizes
    moto = await MotoS3.start(ctx.procs)
    stacks: list[Platform] = []
    try:
        await moto.create_bucket(BUCKET)

        async def s3_side(name: str, **extra: str) -> Context:
            settings = {**ctx.platform.settings, **moto.settings(f"s3://{BUCKET}/{PREFIX}"), **extra}
            platform = Platform(
                ctx.servers,
                ctx.procs,
                ctx.run_dir / name / "results",
                key=ctx.platform.key,
                settings=settings,
            )
            stacks.append(platform)
            await platform.start_api()
            return ctx.on(platform)

        s3 = await s3_side("s3")
        presigned = await s3_side("s3-presigned", S3_PRESIGNED_DOWNLOADS="true")
        ports = f"S3 API on {s3.platform.port}, presigned on {presigned.platform.port}"
        ctx.log(f"moto S3 on port {moto.port}; {ports}")

        sides: dict[str, Context] = {"local": ctx, "S3": s3}
        small: dict[str, list[float]] = {side: [] for side in sides}
        large: dict[str, list[ReportJob]] = {side: [] for side in sides}
        for r in range(s.s3_rounds):
            for side in list(sides)[:: 1 if r % 2 == 0 else -1]:
                small[side].append(await _small_jobs(sides[side], f"s3-{side}-{r}"))
                large[side].append(await report_job(sides[side], s.download_rows, seed=5))
        local_job, s3_job = large["local"][-1], large["S3"][-1]
        if local_job.file["sha256"] != s3_job.file["sha256"]:
            raise BenchError("the same csv_report wrote different bytes on S3 and on the local folder")
        size = int(s3_job.file["size_bytes"])

        http: dict[str, list[float]] = {"local": [], "S3": [], "presigned": []}
        cpu: dict[str, str] = {}
        for side, job in ((ctx, local_job), (s3, s3_job), (presigned, s3_job)):  # warm-up, not timed
            await http_download(side, job.id, size, follow=side is presigned)
        for _ in range(s.download_repeats):
            http["local"].append(await http_download(ctx, local_job.id, size))
            rate, cpu["S3"] = await _metered(s3, moto, s3_job)
            http["S3"].append(rate)
            rate, cpu["presigned"] = await _metered(presigned, moto, s3_job, follow=True)
            http["presigned"].append(rate)
    finally:
        for platform in stacks:
            platform.stop()
        moto.stop()

    def total_rate(jobs: list[ReportJob]) -> float:
        return sum(j.rows for j in jobs) / sum(j.seconds for j in jobs)

    rows_local, rows_s3 = total_rate(large["local"]), total_rate(large["S3"])
    small_local, small_s3 = statistics.harmonic_mean(small["local"]), statistics.harmonic_mean(small["S3"])
    dl = {side: median(rates) for side, rates in http.items()}
    ctx.log(
        f"S3 vs local: csv_report {rows_s3:,.0f} vs {rows_local:,.0f} rows/s, small jobs {small_s3:.1f} vs "
        f"{small_local:.1f} jobs/s, download {dl['S3'] / MB:.0f} (presigned {dl['presigned'] / MB:.0f}) vs "
        f"{dl['local'] / MB:.0f} MB/s"
    )
    part = s3.setting("s3_part_size_bytes")
    parts = -(-size // part) if size > part else 1
    upload = f"{parts} parts, multipart" if parts > 1 else "one PutObject"
    add = ctx.report.add
    add(
        Row(
            "11",
            f"csv_report job rows/s on S3, {s.download_rows:,} rows ({size / MB:.0f} MB; {upload})",
            _rows(rows_s3),
            f"local folder: {_rows(rows_local)}",
            rows_s3 / rows_local,
        )
    )
    add(
        Row(
            "11",
            f"csv_report jobs/s on S3, a fresh worker draining {s.s3_small_jobs} jobs of {s.s3_small_rows:,} "
            "rows (one PutObject each)",
            f"{small_s3:.1f} jobs/s",
            f"local folder: {small_local:.1f} jobs/s",
            small_s3 / small_local,
        )
    )
    add(
        Row(
            "11",
            f"GET /jobs/{{id}}/download from S3, {size / MB:.0f} MB, streamed through the API",
            f"{dl['S3'] / MB:.0f} MB/s",
            f"local folder: {dl['local'] / MB:.0f} MB/s",
            dl["S3"] / dl["local"],
        )
    )
    add(
        Row(
            "11",
            "same with S3_PRESIGNED_DOWNLOADS=true (307, then GET from the store, both timed)",
            f"{dl['presigned'] / MB:.0f} MB/s",
            f"local folder: {dl['local'] / MB:.0f} MB/s",
            dl["presigned"] / dl["local"],
        )
    )
    note = ctx.report.note
    note(
        NAME,
        "the store is moto's S3 server (`python -m moto.server`): one Python process (werkzeug, one thread "
        "per request, under one GIL) keeping objects in its own memory, on the same 2 cores as the API, the "
        "worker and PostgreSQL. It speaks S3's protocol but is not AWS: no network latency between regions "
        "or per-request cost, but no C-speed server either. The ratios are what the S3 code path plus moto "
        "cost here against the local folder; they do not predict AWS S3 or MinIO, so there is no target.",
    )
    note(
        NAME,
        f"csv_report jobs (started_at → finished_at, which on S3 includes the upload from the scratch file): "
        f"{s.s3_rounds} round(s), sides alternated, order swapped each round. {s.download_rows:,} rows: "
        f"S3 {', '.join(_rows(j.rate) for j in large['S3'])}; local "
        f"{', '.join(_rows(j.rate) for j in large['local'])} (one job per round, a fresh worker each; "
        f"both sides' files are byte-identical, sha256 compared). Small jobs: S3 "
        f"{', '.join(f'{r:.1f}' for r in small['S3'])} jobs/s; local "
        f"{', '.join(f'{r:.1f}' for r in small['local'])} jobs/s (first start → last finish).",
    )
    note(
        NAME,
        f"downloads, median of {s.download_repeats} after one untimed each, one connection, body discarded, "
        f"local / S3 / presigned alternated: local {_mbs(http['local'])}; S3 through the API "
        f"{_mbs(http['S3'])}; presigned {_mbs(http['presigned'])}. Streaming through the API, each 1 MiB "
        "chunk crosses loopback twice (moto → API → client) and is copied by two Python processes. "
        f"CPU during the last streamed download: {cpu.get('S3', '-')}; during the last "
        f"presigned one: {cpu.get('presigned', '-')} (the presigned download never touches the API after the "
        "307, so its rate is moto's own serving rate). Scenario 5 gives the local download against the disk "
        "and plain TCP; the Range request rate is not measured by either.",
    )
