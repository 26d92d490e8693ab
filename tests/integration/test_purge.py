"""Purge removes exactly what outlived its retention.

Old terminal jobs and their files, expired idempotency keys and orphan files go; nothing newer does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.adapters.storage import MARKER, file_key
from backend.core.config import Settings
from backend.repo.jobs import JobRepository
from backend.services.purge import purge
from tests.utils import db
from tests.utils.db import resources
from tests.utils.stack import ROOT, Stack, open_stack, settings_env, submit, wait_for


async def write_orphan(settings: Settings) -> Path:
    """A file this deployment stored for a job whose row is gone (a crash between the two deletes)."""
    job_id = uuid.uuid4()
    async with resources(settings) as res:
        scratch = res.storage.scratch_path(job_id, "stray.csv")
        scratch.write_text("x\n")
        await res.storage.put(file_key(job_id, "stray.csv"), scratch)
    return settings.resolved_results_dir / str(job_id)


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
        orphan = await write_orphan(s)
        foreign = results / str(uuid.uuid4())  # no marker: another deployment's folder
        foreign.mkdir()
        (foreign / "theirs.csv").write_text("x\n")

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
        assert not orphan.exists() and (foreign / "theirs.csv").exists()
        for job in old:
            assert not (results / job["id"]).exists()
        for job in new:
            assert len(list((results / job["id"]).glob("[!.]*"))) == 1


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


async def test_deployments_sharing_a_results_folder_keep_each_others_files(
    servers: tuple[str, str], template_db: str, tmp_path: Path
) -> None:
    """Two deployments (two databases, cloned from `template_db`) on one RESULTS_DIR (b's is a symlink)."""
    (tmp_path / "a" / "results").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results").symlink_to(tmp_path / "a" / "results", target_is_directory=True)
    async with (
        open_stack(*servers, tmp_path / "a", workers=1) as a,
        open_stack(*servers, tmp_path / "b", workers=1) as b,
    ):
        shared = a.settings.resolved_results_dir
        assert b.settings.resolved_results_dir == shared
        folders = {}
        for name, stack in (("a", a), ("a-lost", a), ("b", b)):
            async with await stack.client() as client:
                job = await submit(client, "csv_report", {"rows": 10})
                await wait_for(client, job["id"], {"completed"})
            folders[name] = shared / job["id"]
        # a-lost: a's row went, its file stayed (a crash between the two deletes): a's orphan.
        await db.execute(a.settings, "DELETE FROM jobs WHERE id = $1", uuid.UUID(folders["a-lost"].name))

        for stack in (a, b):
            async with resources(stack.settings) as res:
                await purge(res)

        assert not folders["a-lost"].exists()
        for name in ("a", "b"):
            assert len(list(folders[name].glob("[!.]*"))) == 1, name
        assert (folders["a"] / MARKER).read_text() != (folders["b"] / MARKER).read_text()


async def test_stray_files_and_unreadable_folders_do_not_stop_the_sweep(
    isolated: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with isolated(workers=0) as stack:
        results = stack.settings.resolved_results_dir
        orphan = await write_orphan(stack.settings)
        stray_file = results / str(uuid.uuid4())
        stray_file.write_text("not a folder\n")
        garbled = results / str(uuid.uuid4())  # its marker cannot be read, as root or not
        (garbled / MARKER).mkdir(parents=True)
        locked = results / str(uuid.uuid4())  # unreadable (unless the tests run as root)
        locked.mkdir()
        locked.chmod(0)
        try:
            with caplog.at_level(logging.WARNING, logger="backend.adapters.storage"):
                async with resources(stack.settings) as res:
                    report = await purge(res)
        finally:
            locked.chmod(0o755)

        assert report.orphan_files == 1 and not orphan.exists()
        assert stray_file.is_file() and garbled.is_dir() and locked.is_dir()
        skipped = {r.__dict__.get("path") for r in caplog.records if r.message == "results entry skipped"}
        assert str(garbled) in skipped
        if os.geteuid() != 0:
            assert str(locked) in skipped


async def test_a_batch_goes_once_its_jobs_are_purged(isolated: Any) -> None:
    async with isolated(workers=0, job_retention_days=7) as stack, await stack.client() as client:
        later = "2099-01-01T00:00:00Z"
        job = {"type": "sleep", "payload": {"seconds": 0}, "scheduled_at": later}
        ended = (await client.post("/batches", json={"jobs": [job, job]})).json()
        waiting = (await client.post("/batches", json={"jobs": [job]})).json()
        assert (await client.post(f"/batches/{ended['id']}/cancel")).status_code == 202
        s = stack.settings
        old = "now() - interval '8 days'"
        await db.execute(s, f"UPDATE jobs SET finished_at = {old}, created_at = {old}")
        await db.execute(s, f"UPDATE batches SET created_at = {old}")
        async with resources(s) as res:
            report = await purge(res)
        assert report.jobs == 2 and report.empty_batches == 1
        assert (await client.get(f"/batches/{ended['id']}")).status_code == 404
        assert (await client.get(f"/batches/{waiting['id']}")).json()["counts"] == {"pending": 1}
