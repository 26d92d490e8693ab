"""Group commit in the worker: the claims, heartbeats and run ends of many runs go to PostgreSQL as one
statement of each kind, every run still gets its own answer, and the caps stay exact; the queue consumer
takes several deliveries per Redis call and finishes them together."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx

from backend.adapters.consumer import FETCH_LUA, FINISH_LUA
from backend.adapters.queue import WAKE_TOKENS_MAX, Queue, wake_list
from backend.domain.lifecycle import succeeded
from backend.domain.records import Claim, Delivery
from backend.services.runs import UNSTORABLE, RunWriter
from tests.utils import db
from tests.utils.stack import Stack, submit


async def _ids(client: httpx.AsyncClient, count: int, type_: str = "sleep", **extra: Any) -> list[uuid.UUID]:
    payload = {"seconds": 1} if type_ == "sleep" else {"data": [1]}
    return [uuid.UUID((await submit(client, type_, payload, **extra))["id"]) for _ in range(count)]


async def _status(stack: Stack, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await db.fetch(stack.settings, "SELECT id, status FROM jobs WHERE id = ANY($1::uuid[])", ids)
    return {r["id"]: r["status"] for r in rows}


async def test_group_claims_from_several_workers_keep_every_cap_exact(isolated: Any) -> None:
    async with isolated(workers=0) as stack:
        capped = await stack.new_key("capped", max_running=5)
        async with await stack.client() as a, await stack.client() as b, await stack.client(capped) as c:
            keyed = await _ids(a, 20, concurrency_key="k", concurrency_limit=3)
            typed = await _ids(b, 20, "cube_sum")
            owned = await _ids(c, 20, concurrency_key="k", concurrency_limit=7)
            free = await _ids(a, 20)
        types = {"cube_sum": 4}
        ids = keyed + typed + owned + free
        random.Random(7).shuffle(ids)
        async with db.resources(stack.settings) as res:
            writers = [RunWriter(res.pool, res.queue, f"w{i}", 30, 0, types) for i in range(4)]
            # four workers, each with a group of every kind of job, all claiming at once
            calls = [writers[i % 4].claim(job_id) for i, job_id in enumerate(ids)]
            claims = [c for c in await asyncio.gather(*calls) if c is not None]
        won = {c.job_id for c in claims}
        assert len(won & set(keyed)) == 3
        assert len(won & set(typed)) == 4
        assert len(won & set(owned)) == 5  # the owner's cap is the tighter one
        assert won >= set(free)
        assert len(won) == len(claims) == len({c.token for c in claims})
        runs = await db.fetch(
            stack.settings, "SELECT job_id, claim_token FROM job_runs WHERE job_id = ANY($1)", ids
        )
        assert sorted((r["job_id"], r["claim_token"]) for r in runs) == sorted(
            (c.job_id, c.token) for c in claims
        )


async def test_two_deliveries_of_one_job_in_a_group_make_one_claim(isolated: Any) -> None:
    async with isolated(workers=0) as stack, await stack.client() as client:
        [job_id] = await _ids(client, 1)
        async with db.resources(stack.settings) as res:
            writer = RunWriter(res.pool, res.queue, "w", 30, 0, None)
            answers = await asyncio.gather(*(writer.claim(job_id) for _ in range(4)))
        assert sum(a is not None for a in answers) == 1
        runs = await db.fetch(stack.settings, "SELECT 1 FROM job_runs WHERE job_id = $1", job_id)
        assert len(runs) == 1


async def test_each_run_end_in_a_group_gets_its_own_answer(isolated: Any) -> None:
    """A result the database refuses fails its own run only; a lost claim is refused alone."""
    async with isolated(workers=0) as stack, await stack.client() as client:
        ids = await _ids(client, 6)
        async with db.resources(stack.settings) as res:
            writer = RunWriter(res.pool, res.queue, "w", 30, 0, None)
            claims = await asyncio.gather(*(writer.claim(job_id) for job_id in ids))
            assert all(c is not None for c in claims)
            runs: list[Claim] = [c for c in claims if c is not None]
            stale = Claim(runs[4].job_id, uuid.uuid4(), 1, 3, "sleep", {}, runs[4].owner_id)
            ends = [succeeded({"n": i}, None) for i in range(6)]
            ends[2] = succeeded({"value": float("nan")}, None)
            targets = [*runs[:4], stale, runs[5]]
            answers = await asyncio.gather(
                *(writer.end(c, e) for c, e in zip(targets, ends, strict=True)), return_exceptions=True
            )
        assert isinstance(answers[2], UNSTORABLE)
        assert [answers[i] for i in (0, 1, 3, 5)] == [True] * 4 and answers[4] is False
        status = await _status(stack, ids)
        assert [status[i] for i in ids] == [
            "completed",
            "completed",
            "running",
            "completed",
            "running",
            "completed",
        ]


async def test_heartbeats_of_a_group_answer_each_run(isolated: Any) -> None:
    async with isolated(workers=0) as stack, await stack.client() as client:
        ids = await _ids(client, 3)
        async with db.resources(stack.settings) as res:
            writer = RunWriter(res.pool, res.queue, "w", 30, 0, None)
            claims = [c for c in await asyncio.gather(*(writer.claim(i) for i in ids)) if c is not None]
            assert (await client.post(f"/jobs/{ids[1]}/cancel")).status_code == 202
            stale = Claim(ids[2], uuid.uuid4(), 1, 3, "sleep", {}, claims[2].owner_id)
            beats = [(claims[0], 0.25), (claims[1], 0.5), (stale, 0.75)]
            answers = await asyncio.gather(*(writer.heartbeat(c, p) for c, p in beats))
        assert answers == [False, True, None]
        rows = await db.fetch(stack.settings, "SELECT id, progress FROM jobs WHERE id = ANY($1)", ids)
        assert {r["id"]: r["progress"] for r in rows} == {ids[0]: 0.25, ids[1]: 0.5, ids[2]: 0.0}


async def test_one_fetch_takes_several_free_deliveries_and_one_call_finishes_them(queue: Queue) -> None:
    owner = uuid.uuid4()
    deliveries = [Delivery(uuid.uuid4(), 0, None, owner, 0) for _ in range(6)]
    assert await queue.enqueue_many(deliveries) == 6
    ids = [f"{d.job_id}:0" for d in deliveries]
    r = queue.redis
    await r.set(f"arq:in-progress:{ids[0]}", "1", px=60_000)  # another worker runs these two
    await r.set(f"arq:in-progress:{ids[1]}", "1", px=60_000)
    await r.delete(f"arq:job:{ids[5]}")  # its message expired: nothing to run
    fetch, finish = r.register_script(FETCH_LUA), r.register_script(FINISH_LUA)
    now_ms = 2_000_000_000_000  # any time now: every queued score is virtual, far below
    keys = [queue.name, wake_list(queue.name)]
    await r.delete(wake_list(queue.name))
    flat = await fetch(keys=keys, args=[now_ms, 10, 5000])
    got = [flat[i].decode() for i in range(0, len(flat), 2)]
    assert sorted(got) == sorted(ids[2:5])
    for d in got:
        assert 0 < await r.pttl(f"arq:in-progress:{d}") <= 5000
    assert await r.zscore(queue.name, ids[5]) is None  # dropped
    assert await fetch(keys=keys, args=[now_ms, 10, 5000]) == []  # all held now
    assert await r.llen(wake_list(queue.name)) == 0  # it never took all it asked for: no one to wake
    await finish(keys=[queue.name], args=got)
    left = {m.decode() for m in await r.zrange(queue.name, 0, -1)}
    assert left == set(ids[:2])
    for d in got:
        assert await r.exists(f"arq:job:{d}", f"arq:in-progress:{d}") == 0


async def test_one_enqueue_wakes_one_worker_and_a_burst_wakes_several(queue: Queue) -> None:
    """Idle workers sleep in BLPOP on the wake list: a token per delivery placed, up to WAKE_TOKENS_MAX."""
    owner, wake = uuid.uuid4(), wake_list(queue.name)
    assert await queue.enqueue_many([Delivery(uuid.uuid4(), 0, None, owner, 0)]) == 1
    assert await queue.redis.llen(wake) == 1
    await queue.redis.delete(wake)
    burst = [Delivery(uuid.uuid4(), 0, None, owner, 0) for _ in range(40)]
    assert await queue.enqueue_many(burst) == 40
    assert await queue.redis.llen(wake) == WAKE_TOKENS_MAX
    # a fetch that takes all it asked for leaves a token for another idle worker
    await queue.redis.delete(wake)
    fetch = queue.redis.register_script(FETCH_LUA)
    flat = await fetch(keys=[queue.name, wake], args=[2_000_000_000_000, 5, 5000])
    assert len(flat) == 10 and await queue.redis.llen(wake) == 1
