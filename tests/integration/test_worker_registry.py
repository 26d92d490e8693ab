"""The live worker registry: workers appear with their jobs; a killed one is gone within a lease."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from backend.domain.records import WorkerRecord
from backend.services.workers import live_workers
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for


async def _live(stack: Stack) -> list[WorkerRecord]:
    async with db.resources(stack.settings) as res:
        return await live_workers(res)


async def _until(stack: Stack, check: Any, within: float) -> list[WorkerRecord]:
    deadline = time.monotonic() + within
    while True:
        workers = await _live(stack)
        if check(workers) or time.monotonic() > deadline:
            return workers
        await asyncio.sleep(0.2)


async def test_workers_appear_with_their_jobs_and_a_killed_one_is_gone_within_a_lease(isolated: Any) -> None:
    async with isolated(workers=1) as stack, await stack.client() as client:
        [first] = stack.workers
        listed = await _until(stack, lambda ws: len(ws) == 1, 15)
        assert [w.pid for w in listed] == [first.pid]
        job = await submit(client, "sleep", {"seconds": 4})
        await wait_for(client, job["id"], {"running"})
        [worker] = await _until(stack, lambda ws: ws and ws[0].running_job_ids, 5)
        assert [str(j) for j in worker.running_job_ids] == [job["id"]]

        first.kill()
        killed_at = time.monotonic()
        gone = await _until(stack, lambda ws: not ws, stack.settings.lease_seconds + 3)
        assert gone == [] and time.monotonic() - killed_at <= stack.settings.lease_seconds + 3

        second = stack.spawn_worker()
        listed = await _until(stack, lambda ws: [w.pid for w in ws] == [second.pid], 15)
        assert [w.pid for w in listed] == [second.pid]
        second.terminate()  # a worker that stops unregisters at once
        assert await _until(stack, lambda ws: not ws, 2) == []


async def test_admin_workers_lists_them_and_client_keys_get_403(isolated: Any) -> None:
    async with isolated(workers=1) as stack, await stack.client() as client:
        async with await stack.admin_client() as admin:
            await _until(stack, lambda ws: len(ws) == 1, 15)
            r = await admin.get("/admin/workers")
            assert r.status_code == 200, r.text
            [worker] = r.json()
            assert worker["pid"] == stack.workers[0].pid and worker["running_job_ids"] == []
        assert (await client.get("/admin/workers")).status_code == 403
