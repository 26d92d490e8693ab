"""PausedTypeRepository: the job types an admin paused (`paused_types`)."""

from __future__ import annotations

from datetime import datetime

from backend.db.pool import Executor

PAUSE = "INSERT INTO paused_types (type) VALUES ($1) ON CONFLICT (type) DO NOTHING"
RESUME = "DELETE FROM paused_types WHERE type = $1"
ALL = "SELECT type, paused_at FROM paused_types"


class PausedTypeRepository:
    """SQL for paused job types."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def pause(self, job_type: str) -> None:
        """Pause the type (pausing again keeps the first time)."""
        await self.db.execute(PAUSE, job_type)

    async def resume(self, job_type: str) -> bool:
        """Resume the type; False if it was not paused."""
        status: str = await self.db.execute(RESUME, job_type)
        return status != "DELETE 0"

    async def all(self) -> dict[str, datetime]:
        """Every paused type and when it was paused."""
        return {r["type"]: r["paused_at"] for r in await self.db.fetch(ALL)}
