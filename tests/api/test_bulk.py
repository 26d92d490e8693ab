"""Bulk cancel and retry: the GET /jobs filters, dry runs, only the transitions the lifecycle allows,
bounded batches over many jobs, never another key's jobs."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for

LATER = "2999-01-01T00:00:00Z"


async def test_bulk_cancel_and_retry_follow_the_filters(isolated: Any) -> None:
    async with isolated(workers=1) as stack, await stack.client() as client, await stack.client() as other:
        waiting = [await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER) for _ in range(3)]
        done = await submit(client, "square_sum", {"data": [2]})
        await wait_for(client, done["id"], {"completed"})
        theirs = await submit(other, "sleep", {"seconds": 0}, scheduled_at=LATER)

        dry = await client.post("/jobs/bulk/cancel", json={"type": ["sleep"], "dry_run": True})
        assert dry.status_code == 200 and dry.json() == {"matched": 3, "changed": 0}
        assert {(await client.get(f"/jobs/{j['id']}")).json()["status"] for j in waiting} == {"pending"}

        cancelled = await client.post("/jobs/bulk/cancel", json={"type": ["sleep"]})
        assert cancelled.json() == {"matched": 3, "changed": 3}
        for job in waiting:
            view = (await client.get(f"/jobs/{job['id']}")).json()
            assert view["status"] == "cancelled" and view["error"] == "cancelled by request"
        assert (await other.get(f"/jobs/{theirs['id']}")).json()["status"] == "pending"  # not another key's

        # A completed job is not retried; the cancelled ones are, with fresh attempts.
        retried = await client.post("/jobs/bulk/retry", json={})
        assert retried.json() == {"matched": 3, "changed": 3}
        assert (await client.get(f"/jobs/{done['id']}")).json()["status"] == "completed"
        again = await client.post("/jobs/bulk/retry", json={"status": ["completed"]})
        assert again.json() == {"matched": 0, "changed": 0}


async def test_bulk_validation_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/jobs/bulk/cancel", json={"status": ["nope"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "status"]
    r = await client.post("/jobs/bulk/retry", json={"dry_run": "maybe"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dry_run"]


async def test_bulk_cancel_of_many_jobs_works_in_batches(isolated: Any) -> None:
    many = 25_000
    async with isolated(workers=0, max_waiting_jobs_per_key=0) as stack, await stack.client() as client:
        seed = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER)
        await _copies(stack, seed["id"], many - 1)
        started = time.monotonic()
        r = await client.post("/jobs/bulk/cancel", json={"status": ["pending"]})
        elapsed = time.monotonic() - started
        assert r.json() == {"matched": many, "changed": many}, r.text
        left = await db.fetch(stack.settings, "SELECT count(*) FROM jobs WHERE status = 'pending'")
        assert left[0][0] == 0
        print(f"bulk cancel of {many} jobs: {elapsed:.1f} s")


async def _copies(stack: Stack, job_id: str, count: int) -> None:
    await db.execute(
        stack.settings,
        """
        INSERT INTO jobs (id, owner_id, type, payload, status, scheduled_at, created_at)
        SELECT gen_random_uuid(), owner_id, type, payload, status, scheduled_at,
               created_at + make_interval(secs => g)
        FROM jobs, generate_series(1, $1::int) AS g WHERE jobs.id = $2
        """,
        count,
        uuid.UUID(job_id),
    )
