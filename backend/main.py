"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.connections import RedisSettings, create_pool
from fastapi import FastAPI

from backend.api import downloads, health, jobs
from backend.api.docs import install_docs
from backend.api.errors import install_error_handlers
from backend.api.limits import BodySizeLimit
from backend.api.state import AppState
from backend.core.config import Settings, get_settings
from backend.db.session import autocommit_engine, make_engine, make_raw_pool, make_sessionmaker
from backend.services.auth import Authenticator, ensure_key
from backend.services.dispatch import Dispatcher
from backend.services.ratelimit import RateLimit, RateLimiter
from backend.services.storage import LocalStorage

DESCRIPTION = """
Submit long-running work, track it, download what it produced.

Authenticate with **Authorize** → `X-API-Key`. Retry `POST /jobs` safely with an `Idempotency-Key` header.
"""


async def build_state(settings: Settings) -> AppState:
    """Connect to PostgreSQL and Redis and build the shared services."""
    engine = make_engine(settings.require_database_url(), pool_size=settings.db_pool_size)
    sessions = make_sessionmaker(engine)
    redis = await create_pool(RedisSettings.from_dsn(settings.require_redis_url()))
    if settings.bootstrap_api_key:
        async with sessions() as session:
            await ensure_key(session, settings.bootstrap_api_key)
            await session.commit()
    return AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        autocommit=autocommit_engine(engine),
        pool=await make_raw_pool(settings.require_database_url(), settings.db_pool_size),
        redis=redis,
        dispatcher=Dispatcher(redis, settings.queue_name),
        authenticator=Authenticator(sessions, settings.auth_cache_seconds),
        storage=LocalStorage(settings.resolved_results_dir),
        rate_limiter=(
            RateLimiter(redis, RateLimit.parse(settings.rate_limit), f"{settings.queue_name}:ratelimit")
            if settings.rate_limit
            else None
        ),
    )


async def close_state(state: AppState) -> None:
    """Release connections."""
    await state.redis.aclose()
    await state.pool.close()
    await state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; its lifespan connects to PostgreSQL and Redis."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.platform = await build_state(settings)
        try:
            yield
        finally:
            await close_state(app.state.platform)

    app = FastAPI(
        title="Async Job Platform",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from packaged assets by install_docs, not from a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(downloads.router)
    install_docs(app)
    return app
