"""The one database path of a process: an asyncpg pool (json/jsonb as Python objects).

SQLAlchemy models (`models.py`) stay the schema for Alembic and the migration test; at run time every
statement goes through the repositories in `backend/repo/` on this pool. asyncpg prepares and caches
each statement per connection; SQLAlchemy's per-statement overhead (pool checkout, compilation cache,
result processing: about 0.3 ms, measured) was a large share of a short job or request.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

T = TypeVar("T")
DEADLOCK_TRIES = 5

Executor = asyncpg.Pool | asyncpg.Connection  # a pool runs each statement on a borrowed connection


async def retry_deadlocks(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt` (one autocommit statement, or a whole transaction) again when PostgreSQL broke a
    deadlock by rolling it back, which it does to one of the parties whole: nothing was written.

    Statements that end several jobs at once lock those jobs' blocked children from the trigger that
    promotes or cancels them (migration 0015), in an order no statement controls; two of them sharing
    children can deadlock, rarely. Every such write is fenced (claim token, expected status), so running
    it again is safe."""
    for n in range(1, DEADLOCK_TRIES + 1):
        try:
            return await attempt()
        except asyncpg.DeadlockDetectedError:
            if n == DEADLOCK_TRIES:
                raise
            await asyncio.sleep(random.uniform(0, 0.01 * n))
    raise AssertionError("unreachable")


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg accepts, from our SQLAlchemy-style `postgresql+asyncpg://` URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def encode_json(value: object) -> str:
    """JSON for PostgreSQL: NaN and infinities are refused here (PostgreSQL would refuse them too)."""
    return json.dumps(value, allow_nan=False)


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=encode_json, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection's reset: nothing beyond asyncpg's own (a transaction left open is rolled
    back, listeners dropped).

    asyncpg's default runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release: a round trip per borrowed connection, about 5% of a POST /jobs (measured). No statement here
    leaves session state behind: advisory locks and `SET LOCAL` are transaction-scoped, cursors live in a
    transaction, and nothing LISTENs."""


async def create_pool(url: str, size: int) -> asyncpg.Pool:
    """A pool of up to `size` connections, opened lazily past the first one.

    Past `size`, callers wait their turn for a connection: under load that beats opening a
    PostgreSQL backend per request.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=1,
        max_size=size,
        init=_json_codecs,
        reset=_keep_session,
        max_inactive_connection_lifetime=300,
    )
    return pool
