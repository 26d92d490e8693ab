"""Scenario 5: MB/s of GET /jobs/{id}/download for a ~100 MB csv_report file against reading it from disk.

Both read the same file while it is in the page cache (it was just written), so the comparison is
the cost of serving it over HTTP, not the disk.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

from bench.context import Context
from bench.http import HOST, download
from bench.report import Row, median
from bench.scenarios.csv_gen import report_job
from bench.stack import BenchError

TARGET_SHARE = 0.5
MB = 1024 * 1024
CHUNK = 1024 * 1024  # the storage layer's read size


def socket_transfer(path: Path) -> tuple[int, float]:
    """The same bytes over loopback TCP with no HTTP: 1 MiB reads and `sendall`, received as a download is."""
    server = socket.create_server((HOST, 0))

    def serve() -> None:
        conn, _ = server.accept()
        buf = bytearray(CHUNK)
        with conn, path.open("rb", buffering=0) as f:
            while n := f.readinto(buf):
                conn.sendall(memoryview(buf)[:n])

    sender = threading.Thread(target=serve, daemon=True)
    sender.start()
    view = memoryview(bytearray(CHUNK))
    got = 0
    start = time.perf_counter()
    with socket.create_connection(server.getsockname()) as sock:
        while n := sock.recv_into(view):
            got += n
    seconds = time.perf_counter() - start
    sender.join()
    server.close()
    return got, seconds


def read_file(path: Path) -> float:
    """Seconds to read the whole file in 1 MiB chunks."""
    buf = bytearray(CHUNK)
    start = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - start


async def http_download(ctx: Context, job_id: str, size: int, *, follow: bool = False) -> float:
    """Bytes/s of one `GET /jobs/{id}/download` from `ctx.platform`'s API (one connection, body discarded);
    with `follow`, through its redirect to a presigned URL too, on the clock."""
    status, got, seconds = await asyncio.to_thread(
        download, ctx.platform.port, f"/jobs/{job_id}/download", ctx.headers, follow=follow
    )
    if status != 200 or got != size:
        raise BenchError(f"download answered {status} with {got} of {size} bytes")
    return size / seconds


async def run(ctx: Context) -> None:
    s = ctx.sizes
    job = await report_job(ctx, s.download_rows, seed=2)
    path = ctx.platform.results_dir / job.file["key"]
    size = path.stat().st_size
    disk, http, tcp = [], [], []
    for _ in range(s.download_repeats):
        disk.append(size / await asyncio.to_thread(read_file, path))
        got, seconds = await asyncio.to_thread(socket_transfer, path)
        if got != size:
            raise BenchError(f"socket transfer moved {got} of {size} bytes")
        tcp.append(size / seconds)
        http.append(await http_download(ctx, job.id, size))
    ours, raw, wire = median(http), median(disk), median(tcp)
    ctx.log(f"download {ours / MB:.0f} MB/s vs disk read {raw / MB:.0f} MB/s ({size / MB:.0f} MB)")
    share = ours / raw
    ctx.report.add(
        Row(
            "5",
            f"GET /jobs/{{id}}/download, {size / MB:.0f} MB file",
            f"{ours / MB:.0f} MB/s",
            f"read from disk in 1 MiB chunks: {raw / MB:.0f} MB/s",
            share,
            f"≥ {TARGET_SHARE:g}x",
            share >= TARGET_SHARE,
            key="download",
        )
    )
    ctx.report.add(
        Row(
            "5",
            "same download against plain TCP (no HTTP)",
            f"{ours / MB:.0f} MB/s",
            f"1 MiB reads + sendall over loopback: {wire / MB:.0f} MB/s",
            ours / wire,
        )
    )
    ctx.report.note(
        "5 Download",
        f"median of {s.download_repeats}; file in the page cache for both; one connection, body discarded. "
        f"HTTP runs: {', '.join(f'{r / MB:.0f}' for r in http)} MB/s; disk: "
        f"{', '.join(f'{r / MB:.0f}' for r in disk)} MB/s; plain TCP: "
        f"{', '.join(f'{r / MB:.0f}' for r in tcp)} MB/s. "
        "Plain TCP over loopback is the ceiling any HTTP server can reach here.",
    )
