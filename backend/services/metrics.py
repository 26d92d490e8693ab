"""Operational metrics in the Prometheus text format: what waits, what runs, what Redis holds."""

from __future__ import annotations

from backend.domain.enums import LIVE_STATUSES
from backend.repo.jobs import JobRepository
from backend.resources import Resources


async def render_metrics(res: Resources) -> str:
    """The metrics page. Only cheap queries: terminal jobs are not counted (that needs a table scan)."""
    jobs = JobRepository(res.pool)
    counts = await jobs.live_counts()
    oldest = await jobs.oldest_due_wait_seconds()
    queued = await res.queue.depth()
    lines = [
        "# HELP jobplatform_jobs Jobs waiting or running, by status.",
        "# TYPE jobplatform_jobs gauge",
        *(f'jobplatform_jobs{{status="{s}"}} {counts.get(s, 0)}' for s in LIVE_STATUSES),
        "# HELP jobplatform_oldest_due_wait_seconds Age of the longest-waiting job that is due to run.",
        "# TYPE jobplatform_oldest_due_wait_seconds gauge",
        f"jobplatform_oldest_due_wait_seconds {oldest:.3f}",
        "# HELP jobplatform_queue_deliveries Deliveries in the Redis queue (queued or deferred).",
        "# TYPE jobplatform_queue_deliveries gauge",
        f"jobplatform_queue_deliveries {queued}",
    ]
    return "\n".join(lines) + "\n"
