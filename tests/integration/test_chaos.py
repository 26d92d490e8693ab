"""Chaos: hundreds of jobs while workers are SIGKILLed again and again.

Every job ends, and no job ever runs twice at once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.utils import db

JOBS = 500
WORKERS = 3
KILL_EVERY_S = 2.0


@pytest.mark.slow
async def test_chaos_every_job_terminal_and_never_run_concurrently(isolated: Any) -> None:
    rng = random.Random(42)
    async with isolated(workers=WORKERS) as stack, await stack.client() as client:
        sem = asyncio.Semaphore(16)

        async def post(i: int) -> str:
            body = {
                "type": "sleep",
                # some long runs, so that a kill always lands mid-run
                "payload": {"seconds": rng.choice([0, 0, 0.05, 0.2, 0.5, 3.0])},
                "max_attempts": 20,
            }
            async with sem:
                r = await client.post("/jobs", json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        submitting = asyncio.gather(*(post(i) for i in range(JOBS)))
        deadline = time.monotonic() + 90
        kills = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(KILL_EVERY_S)
            victim = rng.choice([w for w in stack.workers if w.proc and w.proc.poll() is None])
            victim.kill()
            kills += 1
            stack.spawn_worker()
            if submitting.done():
                left = await db.fetch(
                    stack.settings,
                    "SELECT count(*) FROM jobs WHERE status NOT IN ('completed','failed','cancelled')",
                )
                if left[0][0] == 0 or kills >= 12:
                    break
        ids = await submitting
        while time.monotonic() < deadline:
            left = await db.fetch(
                stack.settings,
                "SELECT count(*) FROM jobs WHERE status NOT IN ('completed','failed','cancelled')",
            )
            if left[0][0] == 0:
                break
            await asyncio.sleep(0.5)

        jobs = await db.fetch(stack.settings, "SELECT id::text, status, attempts FROM jobs")
        runs = await db.fetch(
            stack.settings,
            "SELECT job_id::text, started_at, ended_at, outcome FROM job_runs ORDER BY started_at",
        )

    assert kills >= 3
    assert len(jobs) == JOBS and {j[0] for j in jobs} == set(ids)
    assert {j[1] for j in jobs} == {"completed"}, [j for j in jobs if j[1] != "completed"][:5]
    by_job: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        by_job[run[0]].append(run)
    for job_id, _status, attempts in jobs:
        history = by_job[job_id]
        assert history[-1][3] == "completed"
        assert attempts == sum(1 for r in history if r[3] != "handed_back")
        for prev, nxt in itertools.pairwise(history):
            assert prev[2] is not None and nxt[1] >= prev[2], f"overlapping runs of {job_id}: {history}"
    assert any(r[3] == "lost" for r in runs), "no run was ever interrupted: the chaos did not bite"
