"""Running caps at claim time (an owner's concurrency key, a job type, an owner's max_running): exact across
worker processes, a held job spends no attempt and starts when a slot frees, a killed worker's slot comes
back with its lease. Overlaps are measured from `job_runs` (one row per claim), not from polling."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from backend.core.config import Settings
from backend.db.pool import create_pool
from backend.domain.lifecycle import succeeded
from backend.repo.jobs import JobRepository
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for

WIDE = {"worker_concurrency": 4}  # 3 workers x 4 slots: 12 slots, far more than any cap below
DURATIONS = itertools.cycle([0.3, 0.4, 0.5])


def peak(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end and a start at the same instant do not overlap)."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    running = top = 0
    for _, step in edges:
        running += step
        top = max(top, running)
    return top


async def intervals(stack: Stack, jobs: Sequence[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    """(started_at, ended_at) of every run of these jobs."""
    rows = await db.fetch(
        stack.settings,
        "SELECT started_at, ended_at FROM job_runs WHERE job_id = ANY($1::uuid[])",
        [uuid.UUID(j["id"]) for j in jobs],
    )
    assert all(r["ended_at"] is not None for r in rows), rows
    return [(r["started_at"], r["ended_at"]) for r in rows]


async def sleeps(client: httpx.AsyncClient, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [await submit(client, "sleep", {"seconds": next(DURATIONS)}, **extra) for _ in range(count)]


async def all_done_once(client: httpx.AsyncClient, jobs: Sequence[dict[str, Any]]) -> None:
    """Every job completed on its first attempt: being held back by a cap spent none."""
    for job in jobs:
        done = await wait_for(client, job["id"], {"completed"}, timeout=60)
        assert done["attempts"] == 1, done


def span_s(runs: Sequence[tuple[datetime, datetime]]) -> float:
    return (max(e for _, e in runs) - min(s for s, _ in runs)).total_seconds()


async def test_concurrency_keys_are_exact_per_owner_and_key_across_workers(isolated: Any) -> None:
    async with isolated(workers=3, **WIDE) as stack:
        capped_key = await stack.new_key("capped", max_running=3)
        async with (
            await stack.client() as a,
            await stack.client() as b,
            await stack.client(capped_key) as c,
        ):
            groups = {
                "a/k": await sleeps(a, 12, concurrency_key="k", concurrency_limit=2),
                "a/k2": await sleeps(a, 6, concurrency_key="k2", concurrency_limit=2),
                "b/k": await sleeps(b, 6, concurrency_key="k", concurrency_limit=2),
                # an owner capped at 3 running, with two keys of limit 2: both caps hold at once
                "c/x": await sleeps(c, 6, concurrency_key="x", concurrency_limit=2),
                "c/y": await sleeps(c, 6, concurrency_key="y", concurrency_limit=2),
            }
            await asyncio.gather(
                all_done_once(a, groups["a/k"] + groups["a/k2"]),
                all_done_once(b, groups["b/k"]),
                all_done_once(c, groups["c/x"] + groups["c/y"]),
            )
        runs = {name: await intervals(stack, jobs) for name, jobs in groups.items()}
    assert {name: len(r) for name, r in runs.items()} == {name: len(j) for name, j in groups.items()}
    assert {name: peak(r) for name, r in runs.items()} == dict.fromkeys(groups, 2)
    # Different keys and different owners do not share a limit; the owner cap bounds c's two keys.
    assert peak(runs["a/k"] + runs["a/k2"] + runs["b/k"]) > 2
    assert peak(runs["c/x"] + runs["c/y"]) == 3
    # A held job starts when a slot frees, not when reconcile next passes (1 s + 1 s grace here): 12 jobs
    # of 0.3-0.5 s two at a time take about 2.4 s of runs; a reconcile hop per slot would take over 10 s.
    assert span_s(runs["a/k"]) < 2.4 + 3, span_s(runs["a/k"])


async def test_type_concurrency_is_exact_across_workers(isolated: Any) -> None:
    async with isolated(workers=3, type_concurrency={"sleep": 2}, **WIDE) as stack:
        async with await stack.client() as a, await stack.client() as b:
            held = await sleeps(a, 6) + await sleeps(b, 6, concurrency_key="k", concurrency_limit=5)
            await wait_for(a, held[0]["id"], {"running", "completed"})  # the workers are up
            started = time.monotonic()
            other = await submit(a, "square_sum", {"data": [3]})
            await wait_for(a, other["id"], {"completed"}, timeout=10)
            assert time.monotonic() - started < 1.5, "an uncapped type waited behind the capped one"
            await asyncio.gather(all_done_once(a, held[:6]), all_done_once(b, held[6:]))
        runs = await intervals(stack, held)
    assert len(runs) == 12
    assert peak(runs) == 2, sorted(runs)
    assert span_s(runs) < 2.4 + 3, span_s(runs)


async def test_a_killed_workers_slot_comes_back_with_its_lease(isolated: Any) -> None:
    async with isolated(workers=2, **WIDE) as stack, await stack.client() as client:
        first = await submit(client, "sleep", {"seconds": 30}, concurrency_key="solo")  # limit 1
        await wait_for(client, first["id"], {"running"})
        second = await submit(client, "sleep", {"seconds": 0.5}, concurrency_key="solo")
        await asyncio.sleep(1.5)  # its delivery came and was refused; reconcile passed and left it
        waiting = (await client.get(f"/jobs/{second['id']}")).json()
        assert waiting["status"] == "pending" and waiting["attempts"] == 0, waiting
        [row] = await db.fetch(
            stack.settings, "SELECT worker_id FROM jobs WHERE id = $1", uuid.UUID(first["id"])
        )
        [holder] = [w for w in stack.workers if f":{w.pid}:" in row["worker_id"]]
        killed_at = time.time()
        holder.kill()
        done = await wait_for(client, second["id"], {"completed"}, timeout=20)
        assert done["attempts"] == 1, done
        # ... and the first job is retried once the slot is free again
        deadline = time.monotonic() + 20
        while (await client.get(f"/jobs/{first['id']}")).json()["attempts"] < 2:
            assert time.monotonic() < deadline, "the first job was not retried"
            await asyncio.sleep(0.1)
        runs = await db.fetch(
            stack.settings,
            "SELECT job_id, started_at, ended_at, outcome FROM job_runs WHERE job_id = ANY($1::uuid[])"
            " ORDER BY started_at",
            [uuid.UUID(first["id"]), uuid.UUID(second["id"])],
        )
    assert [(str(r["job_id"]), r["outcome"]) for r in runs] == [
        (first["id"], "lost"),
        (second["id"], "completed"),
        (first["id"], None),
    ]
    restart_s = runs[1]["started_at"].timestamp() - killed_at
    assert restart_s < 2 + 3, restart_s  # the 2 s lease, the 1 s recovery loop, a claim
    assert runs[1]["started_at"] >= runs[0]["ended_at"] and runs[2]["started_at"] >= runs[1]["ended_at"]


async def _ids(client: httpx.AsyncClient, count: int, type_: str = "sleep", **extra: Any) -> list[uuid.UUID]:
    payload = {"seconds": 1} if type_ == "sleep" else {"data": [1]}
    return [uuid.UUID((await submit(client, type_, payload, **extra))["id"]) for _ in range(count)]


async def _claim_all(url: str, ids: Sequence[uuid.UUID], owner_cap: int, types: dict[str, int]) -> list[Any]:
    """Claim every job at once, each from its own connection."""
    pool = await create_pool(url, len(ids))
    try:
        calls = [
            JobRepository(pool).claim(job_id, f"w{i}", 30, owner_cap, types) for i, job_id in enumerate(ids)
        ]
        return [c for c in await asyncio.gather(*calls) if c is not None]
    finally:
        await pool.close()


async def test_concurrent_claims_never_exceed_a_cap(isolated: Any) -> None:
    async with isolated(workers=0) as stack:
        url = stack.settings.require_database_url()
        capped = await stack.new_key("capped", max_running=5)
        async with await stack.client() as a, await stack.client() as b, await stack.client(capped) as c:
            keyed = await _ids(a, 20, concurrency_key="k", concurrency_limit=3)
            typed = await _ids(b, 20, "cube_sum")
            owned = await _ids(c, 20, concurrency_key="k", concurrency_limit=7)
        types = {"cube_sum": 4}
        won = await _claim_all(url, keyed, 0, types)
        assert len(won) == 3
        assert len(await _claim_all(url, typed, 0, types)) == 4
        assert len(await _claim_all(url, owned, 5, types)) == 5  # the owner's cap is the tighter one
        assert len(await _claim_all(url, typed, 0, {})) == 16  # without TYPE_CONCURRENCY, the rest run

        async with db.pool(stack.settings) as pool:
            jobs = JobRepository(pool)
            # Reconcile leaves the jobs of a full cap alone (they would only be refused again) ...
            due = {r["id"] for r in await jobs.due_waiting(0, 1000, 3600, 0, types)}
            assert due.isdisjoint(keyed) and due.isdisjoint(owned)
            # ... and when a run of the cap ends, it frees a slot there: the cap's longest-waiting job is next
            [ended] = await jobs.end_runs([(won[0].job_id, won[0].token, succeeded(None, None))], 0, types)
            assert ended.freed_key == "k" and ended.freed_type is None and not ended.freed_capped_slot
            held = [job_id for job_id in keyed if job_id not in {w.job_id for w in won}]
            assert [r["id"] for r in await jobs.next_due_of_key(won[0].owner_id, "k", 2)] == held[:2]
            due = {r["id"] for r in await jobs.due_waiting(0, 1000, 3600, 0, types)}
            assert due >= set(held)  # the cap has room: reconcile would bring them back


def test_type_concurrency_names_known_types_and_caps_of_at_least_one() -> None:
    assert Settings(type_concurrency={"csv_report": 4}).type_concurrency == {"csv_report": 4}
    with pytest.raises(ValidationError, match=r"unknown job type.*nope"):
        Settings(type_concurrency={"nope": 1})
    with pytest.raises(ValidationError, match=r"at least 1.*sleep"):
        Settings(type_concurrency={"sleep": 0})
