"""Async engine and session factory."""

from __future__ import annotations

import json

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine whose pool holds `pool_size` connections open.

    No overflow: an overflow connection is closed when returned, so under load every request would
    pay for a PostgreSQL backend start; past the pool, requests wait their turn for a connection.
    """
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_recycle=1800)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, each statement committing on its own: no BEGIN/COMMIT round trips.

    For single-statement work (a claim, a heartbeat, an insert without an idempotency key, a read);
    anything that needs several statements to commit together uses the transactional sessions.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def make_raw_pool(url: str, size: int) -> asyncpg.Pool:
    """A raw asyncpg pool on the same database, for the few statements every request or job runs.

    json/jsonb travel as Python objects, as they do through SQLAlchemy.
    """
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, init=_json_codecs)
    return pool
