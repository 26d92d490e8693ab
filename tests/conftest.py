"""Session-wide servers (embedded PostgreSQL + Valkey unless DATABASE_URL / REDIS_URL are set)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.cli import migrate
from backend.core.embedded import EmbeddedPostgres, EmbeddedValkey, create_database, database_url
from tests.utils.s3 import S3Server
from tests.utils.stack import TEMPLATE_DB, Stack, open_stack


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(admin PostgreSQL URL, Redis URL) for the whole run."""
    base = tmp_path_factory.mktemp("servers")
    pg = valkey = None
    admin_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not admin_url:
        pg = EmbeddedPostgres(base / "pg")
        admin_url = pg.start()
    if not redis_url:
        valkey = EmbeddedValkey(base / "valkey")
        redis_url = valkey.start()
    try:
        yield admin_url, redis_url
    finally:
        if valkey:
            valkey.stop()
        if pg:
            pg.stop()


@pytest.fixture(scope="session")
async def s3_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[S3Server]:
    """One moto S3 server process for the session, with the `results` bucket (tests use own prefixes)."""
    server = await asyncio.to_thread(S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start)
    try:
        await server.create_bucket()
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(scope="session")
async def template_db(servers: tuple[str, str]) -> str:
    """A database migrated once to head; every test stack is cloned from it."""
    admin_url, _ = servers
    await create_database(admin_url, TEMPLATE_DB, drop=True)
    import anyio

    await anyio.to_thread.run_sync(migrate, database_url(admin_url, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture(scope="session")
async def stack(
    servers: tuple[str, str], template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """The shared platform most tests use: one database, one queue, two worker processes."""
    admin_url, redis_url = servers
    async with open_stack(admin_url, redis_url, tmp_path_factory.mktemp("main"), workers=2) as s:
        yield s


@pytest.fixture
async def client(stack: Stack):  # type: ignore[no-untyped-def]
    """An API client with its own fresh API key."""
    async with await stack.client() as c:
        yield c


@pytest.fixture
def isolated(servers: tuple[str, str], template_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory for a private stack (own database and queue) for tests that disturb global state."""
    admin_url, redis_url = servers

    def make(workers: int = 1, redis: str | None = None, **overrides: object):  # type: ignore[no-untyped-def]
        return open_stack(admin_url, redis or redis_url, tmp_path / "stack", workers=workers, **overrides)

    return make
