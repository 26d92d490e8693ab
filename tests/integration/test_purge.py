"""Purge removes exactly what outlived its retention.

Old terminal jobs and their files, expired idempotency keys and orphan files go; nothing newer does.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

from backend.repo.jobs import JobRepository
from backend.services.purge import purge
from tests.utils import db
from tests.utils.db import resources
from tests.utils.stack import ROOT, Stack, settings_env, submit, wait_for


async def test_purge_removes_exactly_old_rows_and_files(isolated: Any) -> None:
    async with isolated(workers=1, job_retention_days=7, idempotency_ttl_hours=24) as stack:
        async with await stack.client() as client:
            old = [await submit(client, "csv_report", {"rows": 10, "seed": i}) for i in range(3)]
            new = [await submit(client, "csv_report", {"rows": 10, "seed": i}) for i in range(2)]
            old_waiting = await submit(client, "sleep", {"seconds": 0}, scheduled_at="2099-01-01T00:00:00Z")
            keyed = await client.post(
                "/jobs",
                json={"type": "sleep", "payload": {"seconds": 0}},
                headers={"Idempotency-Key": "k-old"},
            )
            await client.post(
                "/jobs",
                json={"type": "sleep", "payload": {"seconds": 0}},
                headers={"Idempotency-Key": "k-new"},
            )
            for job in old + new:
                await wait_for(client, job["id"], {"completed"})
        s = stack.settings
        await db.execute(
            s,
            "UPDATE jobs SET finished_at = now() - interval '8 days' WHERE id = ANY($1::uuid[])",
            [uuid.UUID(j["id"]) for j in old],
        )
        await db.execute(
            s,
            "UPDATE jobs SET created_at = now() - interval '30 days' WHERE id = $1",
            uuid.UUID(old_waiting["id"]),
        )
        await db.execute(
            s, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'k-old'"
        )
        results = stack.settings.resolved_results_dir
        orphan = results / str(uuid.uuid4())
        orphan.mkdir()
        (orphan / "stray.csv").write_text("x\n")

        dry = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "backend.cli", "purge", "--dry-run"],
            env=settings_env(stack.settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "would remove: 3 jobs, 3 files, 1 idempotency keys, 1 orphan files" in dry.stdout
        assert len(await db.fetch(s, "SELECT id FROM jobs")) == 8

        async with resources(s.model_copy(update={"purge_batch_size": 2})) as res:
            report = await purge(res)
        assert (report.jobs, report.files, report.idempotency_keys, report.orphan_files) == (3, 3, 1, 1)
        assert report.batches == 2  # bounded batches: 2 + 1

        left = {str(r[0]) for r in await db.fetch(s, "SELECT id FROM jobs")}
        old_ids = {j["id"] for j in old}
        assert len(left) == 5 and not left & old_ids
        assert {j["id"] for j in new} | {old_waiting["id"], keyed.json()["id"]} <= left
        assert [r[0] for r in await db.fetch(s, "SELECT key FROM idempotency_keys")] == ["k-new"]
        assert not orphan.exists()
        for job in old:
            assert not (results / job["id"]).exists()
        for job in new:
            assert len(list((results / job["id"]).iterdir())) == 1


async def test_purge_keeps_a_job_retried_between_select_and_delete(stack: Stack, client: Any) -> None:
    job = await submit(client, "sleep", {"seconds": 0}, scheduled_at="2099-01-01T00:00:00Z")
    assert (await client.post(f"/jobs/{job['id']}/cancel")).json()["status"] == "cancelled"
    job_id = uuid.UUID(job["id"])
    await db.execute(
        stack.settings, "UPDATE jobs SET finished_at = now() - interval '8 days' WHERE id = $1", job_id
    )
    retention_s = 7 * 86400

    async with db.pool(stack.settings) as pool:
        jobs = JobRepository(pool)
        assert job_id in [r["id"] for r in await jobs.expired_terminal(retention_s, 100_000)]
        retried = await client.post(f"/jobs/{job_id}/retry")
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        assert await jobs.delete_expired([job_id], retention_s) == []

    assert (await client.get(f"/jobs/{job_id}")).status_code == 200
