"""Advisory locks that make a periodic duty run once at a time across every worker."""

from __future__ import annotations

import asyncpg

RECONCILE_LOCK = 0x6A6F6273_0001  # pg advisory lock ids: "jobs" + n
PURGE_LOCK = 0x6A6F6273_0002
STATS_LOCK = 0x6A6F6273_0003
# If the holder freezes mid-transaction (SIGSTOP, a stalled VM), PostgreSQL ends its session, so a lock
# cannot be held hostage and the duty goes on in the other workers.
IDLE_LIMIT_MS = 5_000


async def try_xact_lock(conn: asyncpg.Connection, key: int, *, guard_idle: bool = True) -> bool:
    """Take a transaction-scoped advisory lock if free; call inside a transaction.

    `guard_idle=False` for a holder that stays idle on purpose while other connections do the work.
    """
    if guard_idle:
        await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_LIMIT_MS}'")
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))
