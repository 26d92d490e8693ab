"""Async Alembic environment (after alembic's `templates/async/env.py`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from backend.core.config import Settings
from backend.db import models  # noqa: F401  (registers the tables on Base.metadata)
from backend.db.base import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    """The URL given by the caller (tests, CLI), else DATABASE_URL."""
    given = config.attributes.get("database_url")
    return str(given) if given else Settings().require_database_url()


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade head --sql`)."""
    context.configure(
        url=database_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        do_run_migrations(connectable)
        return
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_online() -> None:
    """Run against a live database (async engine)."""
    if config.attributes.get("connection") is not None:
        do_run_migrations(config.attributes["connection"])
        return
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
