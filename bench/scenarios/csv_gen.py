"""Scenario 4: csv_report rows/s against plain `csv.writer.writerows` on the same rows; peak RSS.

In-process: `write_report` (generate, format, hash, write) against `writerows` on the very same rows,
materialised a chunk at a time outside the timed part; both files must come out byte-identical.
Through the worker: real csv_report jobs, each on a fresh worker process, for end-to-end rows/s and
the process's peak RSS (VmHWM) at a small and a large size.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.report import Row
from bench.stack import BenchError
from worker.context import Progress
from worker.files import WRITE_BUFFER, HashingWriter
from worker.tasks.csv_report import CHUNK_ROWS, HEADER, format_chunk, write_report

TARGET_SHARE = 0.70
TARGET_RSS_GROWTH = 1.5
MB = 1024 * 1024


def time_csv_report(path: Path, rows: int) -> tuple[float, str]:
    """Seconds `write_report` (and the writer's flush + fsync) take for `rows` rows, and the sha256."""
    start = time.perf_counter()
    writer = HashingWriter(path)
    write_report(writer, rows, 0, Progress(), threading.Event())
    writer.finish()
    return time.perf_counter() - start, writer.sha256.hexdigest()


def _rows(rng: random.Random, first_id: int, count: int) -> list[tuple[int, str, str, str, int, str, str]]:
    out = []
    for line in format_chunk(rng, first_id, count).splitlines():
        order, day, customer, product, qty, price, total = line.split(",")
        out.append((int(order), day, customer, product, int(qty), price, total))
    return out


def time_csv_writer(path: Path, rows: int) -> float:
    """Seconds `csv.writer.writerows` spends writing the same rows (their generation is not timed)."""
    rng = random.Random(0)
    timed = 0.0
    with path.open("w", newline="", buffering=WRITE_BUFFER) as f:
        writer = csv.writer(f)
        writer.writerow(HEADER.strip().split(","))
        done = 0
        while done < rows:
            chunk = _rows(rng, done + 1, min(CHUNK_ROWS, rows - done))
            start = time.perf_counter()
            writer.writerows(chunk)
            timed += time.perf_counter() - start
            done += len(chunk)
        start = time.perf_counter()
        f.flush()
        os.fsync(f.fileno())  # as HashingWriter.finish does
        timed += time.perf_counter() - start
    return timed


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MB):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ReportJob:
    """A csv_report job run on a worker process of its own."""

    id: str
    rows: int
    seconds: float  # started_at → finished_at: generating and writing the file, and publishing it
    file: dict[str, Any]  # the row's result_file (key, size_bytes, sha256, ...)
    idle_rss: int  # the worker's VmHWM before the job
    peak_rss: int  # and after it

    @property
    def rate(self) -> float:
        """Rows/s inside the job."""
        return self.rows / self.seconds


async def report_job(ctx: Context, rows: int, seed: int) -> ReportJob:
    """One csv_report of `rows` rows on a fresh worker of `ctx.platform` (whatever its storage), stopped
    afterwards."""
    worker = await ctx.platform.spawn_worker()
    try:
        idle = worker.peak_rss()
        job = await ctx.post_job({"type": "csv_report", "payload": {"rows": rows, "seed": seed}})
        row = await ctx.wait_job(job["id"])
        peak = worker.peak_rss()
    finally:
        ctx.platform.stop_workers()
    seconds = row["finished"] - row["started"]
    return ReportJob(job["id"], rows, float(seconds), json.loads(row["result_file"]), idle, peak)


async def run(ctx: Context) -> None:
    s = ctx.sizes
    folder = ctx.run_dir / "csv"
    folder.mkdir(parents=True, exist_ok=True)
    ours_s, ours_sha = await asyncio.to_thread(time_csv_report, folder / "report.csv", s.csv_inprocess_rows)
    plain_s = await asyncio.to_thread(time_csv_writer, folder / "plain.csv", s.csv_inprocess_rows)
    if await asyncio.to_thread(sha256_of, folder / "plain.csv") != ours_sha:
        raise BenchError("csv.writer and csv_report wrote different bytes for the same rows")
    ours_rate, plain_rate = s.csv_inprocess_rows / ours_s, s.csv_inprocess_rows / plain_s
    ctx.log(f"csv_report {ours_rate:,.0f} rows/s vs csv.writer {plain_rate:,.0f} rows/s")
    for path in folder.iterdir():
        path.unlink()

    small = await report_job(ctx, s.csv_small_rows, seed=1)
    large = await report_job(ctx, s.csv_large_rows, seed=1)
    small_peak, large_peak = small.peak_rss, large.peak_rss
    ctx.log(f"csv_report jobs: peak RSS {small_peak / MB:.0f} MB → {large_peak / MB:.0f} MB")

    share = ours_rate / plain_rate
    ctx.report.add(
        Row(
            "4",
            f"csv_report rows/s in-process ({s.csv_inprocess_rows:,} rows)",
            f"{ours_rate:,.0f} rows/s",
            f"csv.writer.writerows, same rows: {plain_rate:,.0f} rows/s",
            share,
            f"≥ {TARGET_SHARE:g}x",
            share >= TARGET_SHARE,
            key="csv",
        )
    )
    growth = large_peak / small_peak
    ctx.report.add(
        Row(
            "4",
            f"worker peak RSS, csv_report {s.csv_large_rows:,} vs {s.csv_small_rows:,} rows",
            f"{large_peak / MB:.0f} MB",
            f"{s.csv_small_rows:,} rows: {small_peak / MB:.0f} MB",
            growth,
            f"≤ {TARGET_RSS_GROWTH:g}x",
            growth <= TARGET_RSS_GROWTH,
            key="rss",
        )
    )
    note = ctx.report.note
    name = "4 CSV generation"
    note(
        name,
        "in-process: both write byte-identical files; csv_report's time includes generating the rows "
        "and sha256, csv.writer's only the writing (rows materialised beforehand, untimed).",
    )
    note(
        name,
        f"through the worker (started_at → finished_at): {small.rate:,.0f} rows/s at "
        f"{s.csv_small_rows:,} rows, {large.rate:,.0f} rows/s at {s.csv_large_rows:,} rows; "
        f"idle worker RSS {small.idle_rss / MB:.0f} MB.",
    )
