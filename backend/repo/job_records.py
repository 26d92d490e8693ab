"""The API's hot-path job SQL on raw asyncpg: insert a job, read one job.

Every `POST /jobs` and `GET /jobs/{id}` runs one of these; SQLAlchemy's per-statement overhead (about
0.3 ms, measured) was a large share of those requests. Rows come back as attribute objects, like
SQLAlchemy rows, so the rest of the code reads them the same way.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import asyncpg

INSERT = """
    INSERT INTO jobs (id, owner_id, type, name, payload, max_attempts, scheduled_at)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, coalesce($7, now()))
    RETURNING *
"""
GET_OWNED = "SELECT * FROM jobs WHERE id = $1 AND owner_id = $2"


def _row(record: asyncpg.Record) -> SimpleNamespace:
    return SimpleNamespace(**dict(record.items()))


class JobRecords:
    """Hot-path job SQL, bound to one asyncpg connection (jsonb decoded by the pool's codec)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(self, values: dict[str, Any]) -> SimpleNamespace:
        """Insert a new job; server defaults come back in the row."""
        v = values
        args = (v["id"], v["owner_id"], v["type"], v["name"], v["payload"], v["max_attempts"])
        return _row(await self.conn.fetchrow(INSERT, *args, v.get("scheduled_at")))

    async def get_owned(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> SimpleNamespace | None:
        """The job if it exists and belongs to the owner."""
        record = await self.conn.fetchrow(GET_OWNED, job_id, owner_id)
        return None if record is None else _row(record)
