"""WorkerRepository: the registry of live worker processes (`workers`)."""

from __future__ import annotations

from backend.db.pool import Executor
from backend.domain.enums import JobStatus
from backend.domain.records import WorkerRecord

BEAT = """
    INSERT INTO workers (id, host, pid, queue_name) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO UPDATE SET last_seen = now()
"""
REMOVE = "DELETE FROM workers WHERE id = $1"
# Seen within the window, with the jobs each one holds (the running-jobs index keeps this cheap).
LIVE = f"""
    SELECT w.*, coalesce(
        (SELECT array_agg(j.id ORDER BY j.started_at) FROM jobs j
         WHERE j.worker_id = w.id AND j.status = '{JobStatus.RUNNING.value}'), '{{}}') AS running_job_ids
    FROM workers w
    WHERE w.queue_name = $1 AND w.last_seen > now() - make_interval(secs => $2)
    ORDER BY w.started_at
"""
FORGET = "DELETE FROM workers WHERE last_seen < now() - make_interval(secs => $1)"


class WorkerRepository:
    """SQL for the worker registry."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def beat(self, worker_id: str, host: str, pid: int, queue_name: str) -> None:
        """Register the worker, or renew its `last_seen`."""
        await self.db.execute(BEAT, worker_id, host, pid, queue_name)

    async def remove(self, worker_id: str) -> None:
        """Unregister a worker that stops."""
        await self.db.execute(REMOVE, worker_id)

    async def live(self, queue_name: str, within_s: float) -> list[WorkerRecord]:
        """Workers of this queue seen within `within_s` seconds, oldest first."""
        rows = await self.db.fetch(LIVE, queue_name, float(within_s))
        return [WorkerRecord(**dict(r.items())) for r in rows]

    async def forget(self, older_than_s: float) -> int:
        """Delete workers not seen for `older_than_s` seconds (killed ones never unregister)."""
        status: str = await self.db.execute(FORGET, float(older_than_s))
        return int(status.split()[-1])
