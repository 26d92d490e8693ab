"""Liveness, readiness and metrics (public)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from backend.api.deps import StateDep
from backend.services.metrics import render_metrics

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _check_postgres(state: StateDep) -> str:
    async with asyncio.timeout(CHECK_TIMEOUT_S):
        await state.resources.pool.fetchval("SELECT 1")
    return "ok"


async def _check_redis(state: StateDep) -> str:
    async with asyncio.timeout(CHECK_TIMEOUT_S):
        await state.resources.queue.ping()
    return "ok"


@router.get("/ready", responses={503: {"description": "PostgreSQL or Redis unreachable"}})
async def ready(state: StateDep) -> JSONResponse:
    """PostgreSQL and Redis both answer."""
    checks: dict[str, str] = {}
    for name, check in (("postgres", _check_postgres), ("redis", _check_redis)):
        try:
            checks[name] = await check(state)
        except Exception as exc:  # report which dependency is down, not the exception text
            checks[name] = f"unavailable ({type(exc).__name__})"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics. This host's (summed over its API and worker processes): HTTP requests by route
    template and status, with latency; webhook deliveries by outcome. The fleet's (from PostgreSQL and
    Redis, the same on every instance): jobs ended by type and outcome, wait and run seconds by type, jobs
    waiting and running, the oldest due wait, the Redis queue depth."""
    body = await render_metrics(state.resources)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
