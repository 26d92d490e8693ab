"""Per-key limits: no key can take everything (waiting jobs, running jobs, result bytes, diagnostic types)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.utils import db
from tests.utils.stack import submit, wait_for

SLEEP = {"type": "sleep", "payload": {"seconds": 0}}


async def test_waiting_jobs_past_the_limit_get_429_naming_it(isolated: Any) -> None:
    async with (
        isolated(workers=0, max_waiting_jobs_per_key=5) as stack,
        await stack.client() as a,
        await stack.client() as b,
    ):
        for _ in range(5):
            assert (await a.post("/jobs", json=SLEEP)).status_code == 201
        refused = await a.post("/jobs", json=SLEEP)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "MAX_WAITING_JOBS_PER_KEY" in refused.json()["detail"]
        assert (await b.post("/jobs", json=SLEEP)).status_code == 201  # other keys are not affected
        listed = (await a.get("/jobs", params={"limit": 100})).json()["items"]
        assert len(listed) == 5


async def test_result_bytes_past_the_limit_get_429_naming_it(isolated: Any) -> None:
    async with isolated(workers=1, max_result_bytes_per_key=1000) as stack, await stack.client() as client:
        report = await submit(client, "csv_report", {"rows": 100})
        done = await wait_for(client, report["id"], {"completed"})
        assert done["result_file"]["size_bytes"] > 1000
        await asyncio.sleep(1.2)  # usage is re-read at most once a second
        refused = await client.post("/jobs", json=SLEEP)
        assert refused.status_code == 429 and "MAX_RESULT_BYTES_PER_KEY" in refused.json()["detail"]


async def test_diagnostic_types_only_where_enabled(isolated: Any) -> None:
    async with isolated(workers=0, enable_diagnostic_jobs=False) as stack, await stack.client() as client:
        refused = await client.post("/jobs", json=SLEEP)
        assert refused.status_code == 422
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", "type"] and "ENABLE_DIAGNOSTIC_JOBS" in error["msg"]
        assert (
            await client.post("/jobs", json={"type": "square_sum", "payload": {"data": [2]}})
        ).status_code == 201


async def test_running_cap_holds_a_key_back_without_spending_attempts(isolated: Any) -> None:
    async with isolated(workers=1, max_running_jobs_per_key=2) as stack:
        async with await stack.client() as a, await stack.client() as b:
            hogs = [await submit(a, "sleep", {"seconds": 1.5}) for _ in range(6)]
            await asyncio.sleep(0.5)
            started = time.monotonic()
            other = await submit(b, "square_sum", {"data": [3]})
            await wait_for(b, other["id"], {"completed"}, timeout=10)
            assert time.monotonic() - started < 1.5, "another key waited behind the capped key"
            for hog in hogs:
                done = await wait_for(a, hog["id"], {"completed"}, timeout=30)
                assert done["attempts"] == 1, done
        runs = await db.fetch(
            stack.settings,
            "SELECT started_at, ended_at FROM job_runs WHERE job_id = ANY($1::uuid[])",
            [uuid.UUID(h["id"]) for h in hogs],
        )
    assert len(runs) == 6
    edges = sorted([(r["started_at"], 1) for r in runs] + [(r["ended_at"], -1) for r in runs])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 2


async def test_blocked_jobs_count_as_waiting(isolated: Any) -> None:
    async with isolated(workers=0, max_waiting_jobs_per_key=3) as stack, await stack.client() as client:
        parent = await submit(client, "sleep", {"seconds": 0})
        for _ in range(2):
            child = await submit(client, "sleep", {"seconds": 0}, depends_on=[parent["id"]])
            assert child["status"] == "blocked"
        refused = await client.post("/jobs", json={**SLEEP, "depends_on": [parent["id"]]})
        assert refused.status_code == 429 and "blocked" in refused.json()["detail"]
