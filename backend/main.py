"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI

from backend.adapters.ratelimit import FailureThrottle, RateLimit, RateLimiter
from backend.api import admin, batches, downloads, health, jobs, links, schedules, stats, webhooks
from backend.api.docs import install_docs
from backend.api.errors import install_error_handlers
from backend.api.limits import BodySizeLimit
from backend.api.state import AppState
from backend.api.telemetry import HttpTelemetry
from backend.core.config import Settings, get_settings
from backend.core.metrics import process_exiting
from backend.core.tracing import tracer_for
from backend.repo.jobs import JobRepository
from backend.resources import Resources, open_resources
from backend.services.auth import Authenticator, ensure_key
from backend.services.jobs import JobService
from backend.services.quotas import QuotaGuard
from backend.services.sessions import SessionService
from backend.services.watch import JobWatcher
from backend.ui import install_ui

if TYPE_CHECKING:
    from backend.core.otel import Tracer

EVENTS_POLL_S = 0.25  # one query per interval per API process, whatever the number of streams

DESCRIPTION = """
Submit long-running work, track it, download what it produced.

Authenticate with **Authorize** → `X-API-Key`. Retry `POST /jobs` safely with an `Idempotency-Key` header.
"""


async def build_state(res: Resources) -> AppState:
    """The API's services on the shared clients; the bootstrap key exists once this returns."""
    settings = res.settings
    if settings.bootstrap_api_key:
        await ensure_key(res.pool, settings.bootstrap_api_key)
    limit = RateLimit.parse(settings.rate_limit) if settings.rate_limit else None
    limiter = RateLimiter(res.queue.redis, limit, f"{settings.queue_name}:ratelimit")
    failures = None
    if settings.auth_failures_per_minute:
        per_minute = RateLimit(settings.auth_failures_per_minute, 60)
        failures = FailureThrottle(res.queue.redis, per_minute, f"{settings.queue_name}:authfail")
    watcher = JobWatcher(JobRepository(res.pool), EVENTS_POLL_S, settings.sse_max_streams_per_key)
    quotas = QuotaGuard(JobRepository(res.pool), settings)
    authenticator = Authenticator(res.pool, settings.auth_cache_seconds, failures)
    secret = settings.ui_session_secret.get_secret_value() if settings.ui_session_secret else None
    sessions = SessionService(res.pool, authenticator, settings.ui_session_hours * 3600, secret)
    return AppState(res, authenticator, watcher, quotas, limiter, sessions, JobService(res, quotas))


def create_app(settings: Settings | None = None, tracer: Tracer | None = None) -> FastAPI:
    """Build the app; its lifespan connects to PostgreSQL and Redis. `tracer`: the spans' destination
    (tests pass one); else OTEL_EXPORTER_OTLP_ENDPOINT's, if it is set."""
    settings = settings or get_settings()
    own_tracer = None if tracer is not None else tracer_for(settings, "jobplatform-api")
    tracer = tracer or own_tracer

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, settings.db_pool_size) as res:
            app.state.platform = state = await build_state(res)
            # What start-up made (modules, the app and its routes, schemas, clients) lives as long as the
            # process: frozen out of the cyclic collector's sight, so that a full collection walks only
            # what requests made. With 32 batches of 1,000 jobs in flight, walking the start-up heap on
            # each one was about a fifth of POST /batches' CPU (measured: 75-97 -> 58-70 ms a batch).
            gc.collect()  # garbage made so far goes first, rather than into the frozen generation
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()  # collectable again once the app is gone (tests start many apps in one process)
                await state.watcher.close()
                if own_tracer is not None:
                    await anyio.to_thread.run_sync(own_tracer.shutdown)
                process_exiting()

    app = FastAPI(
        title="Async Job Platform",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from packaged assets by install_docs, not from a CDN
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks stay off: HttpTelemetry makes the request spans (with our
        # provider, not a global one that would get a second set), and even with no provider configured
        # their per-request check cost 6-12 us of a 60-70 us GET /health (measured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Outermost of ours: it sees every answer, the 413s of BodySizeLimit included.
    app.add_middleware(HttpTelemetry, router=app.router, tracer=tracer)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(admin.router)
    app.include_router(downloads.router)
    app.include_router(stats.router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    app.include_router(links.router)
    install_docs(app)
    install_ui(app)
    return app
