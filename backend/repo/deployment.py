"""DeploymentRepository: the one-row `deployment` table (this database's identity)."""

from __future__ import annotations

import uuid

import asyncpg

from backend.db.pool import Executor
from backend.domain.errors import DatabaseNotMigrated

# Two statements, not one: a process that loses the race to insert must read the winner's row, and a
# single statement's snapshot would not see it.
CREATE = "INSERT INTO deployment (id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING"
GET = "SELECT id FROM deployment"


class DeploymentRepository:
    """SQL for the deployment row."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def id(self) -> uuid.UUID:
        """This deployment's id, made (once, whichever process comes first) on first use."""
        try:
            await self.db.execute(CREATE, uuid.uuid4())
            deployment_id: uuid.UUID = await self.db.fetchval(GET)
        except asyncpg.UndefinedTableError as exc:
            raise DatabaseNotMigrated() from exc
        return deployment_id
