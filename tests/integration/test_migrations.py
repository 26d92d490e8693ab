"""Alembic owns the schema: migrations equal the models, and they run down and up again."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from alembic import command
from backend.cli import alembic_config
from backend.core.embedded import create_database, database_url
from backend.db.base import Base
from backend.db.pool import asyncpg_dsn


async def _fresh_db(admin_url: str) -> str:
    name = f"jp_mig_{uuid.uuid4().hex[:8]}"
    await create_database(admin_url, name)
    return database_url(admin_url, name)


def _diff(url: str) -> list[Any]:
    """Autogenerate's diff between the live schema and the models."""
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        await engine.dispose()
        return list(diff)

    return anyio.run(run)


def _tables(url: str) -> set[str]:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> set[str]:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        return names

    return anyio.run(run)


async def _execute(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection; its rows, if any."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_migrations_match_models_and_round_trip(servers: tuple[str, str]) -> None:
    url = await _fresh_db(servers[0])
    cfg = alembic_config(url)
    await anyio.to_thread.run_sync(command.upgrade, cfg, "head")
    assert await anyio.to_thread.run_sync(_diff, url) == []
    assert {
        "jobs",
        "api_keys",
        "idempotency_keys",
        "job_runs",
        "deployment",
    } <= await anyio.to_thread.run_sync(_tables, url)

    await anyio.to_thread.run_sync(command.downgrade, cfg, "base")
    assert await anyio.to_thread.run_sync(_tables, url) == {"alembic_version"}

    await anyio.to_thread.run_sync(command.upgrade, cfg, "head")
    assert await anyio.to_thread.run_sync(_diff, url) == []


async def test_dropping_the_key_prefix_downgrades_with_keys_present(servers: tuple[str, str]) -> None:
    url = await _fresh_db(servers[0])
    cfg = alembic_config(url)
    await anyio.to_thread.run_sync(command.upgrade, cfg, "0002_drop_api_key_prefix")
    await _execute(url, "INSERT INTO api_keys (id, name, key_hash) VALUES (gen_random_uuid(), 'k', 'h')")

    await anyio.to_thread.run_sync(command.downgrade, cfg, "0001_initial")
    assert await _execute(url, "SELECT prefix FROM api_keys") == [("(unknown)",)]
    await anyio.to_thread.run_sync(command.upgrade, cfg, "head")
    assert await _execute(url, "SELECT name FROM api_keys") == [("k",)]
