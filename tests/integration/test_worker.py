"""The worker against real PostgreSQL and Redis: job types, retries, timeouts, cancellation, manual retry."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from backend.domain.records import RunRecord
from backend.domain.retry import backoff_ceiling
from backend.repo.jobs import JobRepository
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for


async def runs_of(stack: Stack, job_id: str) -> list[RunRecord]:
    """The job's claim history from `job_runs`."""
    async with db.pool(stack.settings) as pool:
        return await JobRepository(pool).runs_of(uuid.UUID(job_id))


async def test_square_and_cube_sums(client: httpx.AsyncClient) -> None:
    sq = await submit(client, "square_sum", {"data": [1.5, -2, 3]})
    cu = await submit(client, "cube_sum", {"data": list(range(1, 101))})
    assert (await wait_for(client, sq["id"], {"completed"}))["result"] == {"value": 15.25}
    assert (await wait_for(client, cu["id"], {"completed"}))["result"] == {"value": 25502500}


async def test_sleep_reports_progress_while_running(client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 1.5})
    await wait_for(client, job["id"], {"running"})
    seen = set()
    for _ in range(30):
        status = (await client.get(f"/jobs/{job['id']}/status")).json()
        seen.add(status["progress"])
        if status["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    assert any(0 < p < 1 for p in seen), seen
    done = await wait_for(client, job["id"], {"completed"})
    assert done["progress"] == 1.0 and done["started_at"] <= done["finished_at"]


async def test_retry_then_success_with_backoff_within_bounds(stack: Stack, client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 0, "fail_first": 2}, max_attempts=3)
    done = await wait_for(client, job["id"], {"completed", "failed"})
    assert done["status"] == "completed" and done["attempts"] == 3 and done["error"] is None
    runs = await runs_of(stack, job["id"])
    assert [r.outcome for r in runs] == ["retry", "retry", "completed"]
    s = stack.settings
    for attempt, (prev, nxt) in enumerate(itertools.pairwise(runs), start=1):
        gap = (nxt.started_at - prev.ended_at).total_seconds()
        assert 0 <= gap <= backoff_ceiling(attempt, s.retry_base_seconds, s.retry_cap_seconds) + 1.0


async def test_retries_exhausted_ends_failed_with_last_error(stack: Stack, client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 0, "fail_first": 5}, max_attempts=2)
    done = await wait_for(client, job["id"], {"failed"})
    assert done["attempts"] == 2
    assert done["error"] == "DeliberateFailure: failing on purpose: attempt 2 of the first 5"
    assert [r.outcome for r in await runs_of(stack, job["id"])] == ["retry", "failed"]


async def test_permanent_error_fails_at_once(stack: Stack, client: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job = await submit(client, "sleep", {"seconds": 60}, scheduled_at=later)
    await client.post(f"/jobs/{job['id']}/cancel")
    # Bad input discovered late: the stored payload no longer validates when the worker reads it.
    bad = "UPDATE jobs SET payload = '{\"seconds\": -5}' WHERE id = $1"
    await db.execute(stack.settings, bad, uuid.UUID(job["id"]))
    assert (await client.post(f"/jobs/{job['id']}/retry")).status_code == 202
    done = await wait_for(client, job["id"], {"failed", "completed"})
    assert done["status"] == "failed" and done["attempts"] == 1 and "ValidationError" in done["error"]


async def test_timeout_counts_as_a_failed_attempt_and_retries(isolated: Any) -> None:
    async with isolated(task_timeouts={"sleep": 0.5}) as stack, await stack.client() as client:
        job = await submit(client, "sleep", {"seconds": 5}, max_attempts=2)
        done = await wait_for(client, job["id"], {"failed", "completed"})
        assert done["status"] == "failed" and done["attempts"] == 2
        assert done["error"] == "TimeoutError: attempt exceeded 0.5s"
        assert [r.outcome for r in await runs_of(stack, job["id"])] == ["retry", "failed"]


async def test_cancel_pending_job_at_once_then_409(client: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job = await submit(client, "sleep", {"seconds": 0}, scheduled_at=later)
    r = await client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    again = await client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409


async def test_cancel_running_job_aborts_it(stack: Stack, client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 60})
    await wait_for(client, job["id"], {"running"})
    r = await client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "running"
    done = await wait_for(client, job["id"], {"cancelled"}, timeout=5)
    assert done["error"] == "cancelled by request" and done["finished_at"] is not None
    assert [r.outcome for r in await runs_of(stack, job["id"])] == ["cancelled"]


async def test_retry_endpoint_runs_failed_or_cancelled_jobs_again(client: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cancelled = await submit(client, "square_sum", {"data": [3]}, scheduled_at=later)
    await client.post(f"/jobs/{cancelled['id']}/cancel")
    r = await client.post(f"/jobs/{cancelled['id']}/retry")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert (await wait_for(client, cancelled["id"], {"completed"}))["result"] == {"value": 9}
    assert (await client.post(f"/jobs/{cancelled['id']}/retry")).status_code == 409

    failed = await submit(client, "sleep", {"seconds": 0, "fail_first": 1}, max_attempts=1)
    await wait_for(client, failed["id"], {"failed"})
    assert (await client.post(f"/jobs/{failed['id']}/retry")).status_code == 202
    again = await wait_for(client, failed["id"], {"failed", "completed"})
    assert again["attempts"] == 1 and again["status"] == "failed"
