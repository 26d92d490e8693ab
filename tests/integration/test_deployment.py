"""The deployment id that marks our result files: made once per database, the same for every process."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from backend.core.embedded import create_database, database_url
from backend.db.pool import create_pool
from backend.domain.errors import DatabaseNotMigrated
from backend.repo.deployment import DeploymentRepository


async def _fresh_db(admin_url: str, template: str | None) -> str:
    name = f"jp_dep_{uuid.uuid4().hex[:8]}"
    await create_database(admin_url, name, template=template)
    return database_url(admin_url, name)


async def test_one_id_per_database_whichever_process_comes_first(
    servers: tuple[str, str], template_db: str
) -> None:
    ids = []
    for _ in range(2):  # two databases cloned from the same template: two deployments
        pool = await create_pool(await _fresh_db(servers[0], template_db), 10)
        try:
            racing = await asyncio.gather(*(DeploymentRepository(pool).id() for _ in range(10)))
            assert len(set(racing)) == 1
            assert await DeploymentRepository(pool).id() == racing[0]  # and it stays
            ids.append(racing[0])
        finally:
            await pool.close()
    assert ids[0] != ids[1]


async def test_an_unmigrated_database_is_a_clear_error(servers: tuple[str, str]) -> None:
    pool = await create_pool(await _fresh_db(servers[0], None), 1)
    try:
        with pytest.raises(DatabaseNotMigrated, match="jobplatform migrate"):
            await DeploymentRepository(pool).id()
    finally:
        await pool.close()
