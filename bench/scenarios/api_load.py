"""Scenario 3: POST /jobs and GET /jobs/{id} under 32 concurrent clients, against GET /health (the floor).

Runs with no worker process, so the API and PostgreSQL have the machine to themselves; the jobs it
creates just wait in the queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bench.context import Context
from bench.http import LoadResult, OnResponse, build_request, run_load
from bench.report import Row, percentile

TARGET_POST_SHARE = 0.25


def latency_text(result: LoadResult) -> str:
    p50, p99 = (percentile(result.latencies, q) * 1000 for q in (50, 99))
    return f"p50 {p50:.1f} / p99 {p99:.1f} ms"


async def load(
    ctx: Context, make: Callable[[int], bytes], on_response: OnResponse | None = None
) -> LoadResult:
    s = ctx.sizes
    port = ctx.platform.port
    await run_load(port, s.clients, make, duration=s.api_warmup_seconds, on_response=on_response)
    meter = ctx.meter()
    meter.start()
    result = await run_load(port, s.clients, make, duration=s.api_seconds, on_response=on_response)
    result.cpu = meter.describe(meter.stop())
    return result


async def run(ctx: Context) -> None:
    """Measure the three endpoints one after the other on the same API process."""
    ctx.platform.stop_workers()
    health_request = build_request("GET", "/health")
    health = await load(ctx, lambda _: health_request)
    health.require(200)
    ctx.log(f"GET /health: {health.rate:.0f} req/s, {latency_text(health)}")

    post_request = build_request("POST", "/jobs", ctx.headers, {"type": "sleep", "payload": {"seconds": 0}})
    ids: list[str] = []

    def keep(_: int, status: int, body: bytes, __: float) -> None:
        if status == 201 and len(ids) < 5000:
            ids.append(json.loads(body)["id"])

    post = await load(ctx, lambda _: post_request, keep)
    post.require(201)
    ctx.log(f"POST /jobs: {post.rate:.0f} req/s, {latency_text(post)}")

    gets = [build_request("GET", f"/jobs/{job_id}", ctx.headers) for job_id in ids]
    get = await load(ctx, lambda i: gets[i % len(gets)])
    get.require(200)
    ctx.log(f"GET /jobs/{{id}}: {get.rate:.0f} req/s, {latency_text(get)}")

    floor = f"GET /health: {health.rate:.0f} req/s, {latency_text(health)}"
    share = post.rate / health.rate
    ctx.report.add(
        Row(
            "3",
            f"POST /jobs throughput, {ctx.sizes.clients} clients",
            f"{post.rate:.0f} req/s, {latency_text(post)}",
            floor,
            share,
            f"≥ {TARGET_POST_SHARE:g}x",
            share >= TARGET_POST_SHARE,
            key="post",
            goal="post",
            brief=f"{post.rate:.0f} vs {health.rate:.0f} req/s ({share:.2f}x)",
        )
    )
    get_row = Row(
        "3",
        f"GET /jobs/{{id}} throughput, {ctx.sizes.clients} clients",
        f"{get.rate:.0f} req/s, {latency_text(get)}",
        floor,
        None,
    )
    get_row.ratio = get.rate / health.rate
    ctx.report.add(get_row)
    for name, result in (("GET /health", health), ("POST /jobs", post), ("GET /jobs/{id}", get)):
        ctx.report.note("3 API latency under load", f"CPU during {name}: {result.cpu}")
    ctx.report.note(
        "3 API latency under load",
        f"{ctx.sizes.clients} keep-alive connections, {ctx.sizes.api_seconds:g} s per endpoint after "
        f"{ctx.sizes.api_warmup_seconds:g} s warm-up; one uvicorn process; no worker running. "
        f"Requests: /health {health.count}, POST {post.count}, GET {get.count}.",
    )
