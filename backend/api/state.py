"""Process-wide resources of the API, built once in the lifespan and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.config import Settings
from backend.services.auth import Authenticator
from backend.services.dispatch import Dispatcher
from backend.services.ratelimit import RateLimiter
from backend.services.storage import Storage


@dataclass
class AppState:
    """Everything a request may need besides its own session."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    autocommit: AsyncEngine  # the same pool; each statement commits on its own
    pool: asyncpg.Pool  # raw asyncpg for the hottest statements (insert a job, read a job)
    redis: ArqRedis
    dispatcher: Dispatcher
    authenticator: Authenticator
    storage: Storage
    rate_limiter: RateLimiter | None = None
