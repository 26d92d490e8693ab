"""Direct database access for tests (to arrange rows and check what the platform stored)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from backend.core.config import Settings
from backend.db.pool import create_pool
from backend.resources import Resources, open_resources


@asynccontextmanager
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the stack's database (json/jsonb as Python objects, as in the platform)."""
    db = await create_pool(settings.require_database_url(), 2)
    try:
        yield db
    finally:
        await db.close()


async def fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement and return its rows."""
    async with pool(settings) as db:
        rows: list[asyncpg.Record] = await db.fetch(sql, *args)
        return rows


async def execute(settings: Settings, sql: str, *args: Any) -> str:
    """Run one statement; returns its status (e.g. `UPDATE 1`)."""
    async with pool(settings) as db:
        status: str = await db.execute(sql, *args)
        return status


@asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    """The platform's shared clients outside any process (for services the workers run on a cron)."""
    async with open_resources(settings, pool_size=4) as res:
        yield res
