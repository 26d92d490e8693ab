"""Queue order: priority first, fair share between keys, ageing so a low priority is never starved."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.adapters.queue import PRIORITY_STEP, Queue
from backend.domain.records import Delivery
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for


def jobs(owner: uuid.UUID, n: int, priority: int = 0) -> list[Delivery]:
    return [Delivery(uuid.uuid4(), 0, None, owner, priority) for _ in range(n)]


async def order(q: Queue) -> list[str]:
    return [m.decode().split(":")[0] for m in await q.redis.zrange(q.name, 0, -1)]


async def test_another_keys_job_goes_right_behind_the_head_of_a_backlog(queue: Queue) -> None:
    heavy, light = uuid.uuid4(), uuid.uuid4()
    await queue.enqueue_many(jobs(heavy, 10_000))
    [newcomer] = jobs(light, 1)
    assert await queue.enqueue(newcomer)
    assert (await order(queue)).index(str(newcomer.job_id)) <= 1  # behind at most the job in service


async def test_a_high_priority_job_jumps_a_backlog_of_its_own_key(queue: Queue) -> None:
    owner = uuid.uuid4()
    await queue.enqueue_many(jobs(owner, 1000))
    [urgent] = jobs(owner, 1, priority=10)
    assert await queue.enqueue(urgent)
    assert (await order(queue))[0] == str(urgent.job_id)


async def test_a_low_priority_job_ages_and_is_served(queue: Queue) -> None:
    [patient] = jobs(uuid.uuid4(), 1, priority=-10)
    await queue.enqueue(patient)
    served = 0
    for _ in range(25):  # rounds of fresh keys' work arriving while workers take the head
        await queue.enqueue_many([d for _ in range(1000) for d in jobs(uuid.uuid4(), 1)])
        popped = [m.decode().split(":")[0] for m, _ in await queue.redis.zpopmin(queue.name, 1000)]
        if str(patient.job_id) in popped:
            served += popped.index(str(patient.job_id)) + 1
            break
        served += len(popped)
    else:
        raise AssertionError("a priority -10 job was never served")
    assert served <= 21 * PRIORITY_STEP  # passed by at most 20 priority steps of other work


async def test_deliveries_not_yet_due_join_the_queue_when_due(queue: Queue) -> None:
    owner = uuid.uuid4()
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    [later] = [Delivery(uuid.uuid4(), 0, soon, owner, 0)]
    assert await queue.enqueue(later)
    assert await order(queue) == [] and await queue.depth() == 1
    assert await queue.promote_due() == 0  # not yet
    await asyncio.sleep(0.4)
    assert await queue.promote_due() == 1
    assert await order(queue) == [str(later.job_id)]
    await queue.discard([(later.job_id, 0)])
    assert await queue.depth() == 0


async def test_priority_job_starts_within_a_second_behind_a_backlog(isolated: Any) -> None:
    async with isolated(workers=1, worker_concurrency=4) as stack, await stack.client() as client:
        assert isinstance(stack, Stack)
        backlog = [{"type": "sleep", "payload": {"seconds": 0.05}} for _ in range(1000)]
        await asyncio.gather(*(client.post("/jobs", json=body) for body in backlog))
        urgent = await submit(client, "sleep", {"seconds": 0}, priority=10)
        done = await wait_for(client, urgent["id"], {"completed"}, timeout=30)
        waited = datetime.fromisoformat(done["started_at"]) - datetime.fromisoformat(done["created_at"])
        left = await db.fetch(stack.settings, "SELECT count(*) FROM jobs WHERE status = 'pending'")
        assert waited < timedelta(seconds=1), (waited, left[0][0])
        assert left[0][0] > 100  # the backlog was still there


async def test_a_new_key_is_not_held_up_by_another_keys_backlog(isolated: Any) -> None:
    async with isolated(workers=1, worker_concurrency=4) as stack, await stack.client() as heavy:
        assert isinstance(stack, Stack)
        owner = await db.fetch(stack.settings, "SELECT id FROM api_keys ORDER BY created_at DESC LIMIT 1")
        rows = await db.fetch(
            stack.settings,
            """INSERT INTO jobs (id, owner_id, type, payload, max_attempts)
               SELECT gen_random_uuid(), $1, 'sleep', '{"seconds": 0.2}', 3 FROM generate_series(1, 10000)
               RETURNING id, owner_id""",
            owner[0][0],
        )
        async with db.open_resources(stack.settings, 2) as res:
            await res.queue.enqueue_many([Delivery(r["id"], 0, None, r["owner_id"], 0) for r in rows])
        await asyncio.sleep(1)  # the backlog is being served
        async with await stack.client() as light:
            first = await submit(light, "sleep", {"seconds": 0.2})
            done = await wait_for(light, first["id"], {"completed"}, timeout=30)
        waited = datetime.fromisoformat(done["started_at"]) - datetime.fromisoformat(done["created_at"])
        assert waited < timedelta(seconds=1), waited  # about one 0.2 s run per slot, not 10,000 / 4 of them
        assert (await heavy.get("/jobs?status=pending&limit=1")).json()["items"]


async def test_deliveries_queued_before_this_order_are_placed_in_it(queue: Queue) -> None:
    """A delivery an older version queued at a wall-clock score would sort behind any backlog."""
    await queue.enqueue_many(jobs(uuid.uuid4(), 100))
    legacy = f"{uuid.uuid4()}:0"
    await queue.redis.zadd(queue.name, {legacy: int(datetime.now(UTC).timestamp() * 1000) - 60_000})
    assert await queue.promote_due() == 1
    assert (await order(queue)).index(legacy.split(":")[0]) <= 1  # fair share: right behind the head


async def test_one_call_places_a_batch_exactly_as_one_call_per_delivery(queue: Queue) -> None:
    """The enqueue script reads the virtual time, the head and the finish tags once per call: the scores it
    gives a batch are those that one call per delivery would give (same owners and priorities, each queue
    its own job ids)."""
    single = Queue(queue.redis, f"{queue.name}-single", horizon_s=3600, lease_s=15)
    owners = [uuid.uuid4() for _ in range(3)]

    def deliveries(spec: list[tuple[int, int]]) -> list[Delivery]:
        return [Delivery(uuid.uuid4(), 0, None, owners[o], p) for o, p in spec]

    head = [(0, 0)] * 5  # a head to move past
    mixed = [(i % 3, (i * 7) % 21 - 10) for i in range(60)]
    late = [(i % 2, -i) for i in range(10)]
    made: list[Delivery] = []
    r = queue.redis
    try:
        for spec in (head, mixed, late):
            together, apart = deliveries(spec), deliveries(spec)
            made += together + apart
            await queue.enqueue_many(together)
            for d in apart:
                await single.enqueue_many([d])
            if spec is mixed:  # the head is served, then more arrive
                for q in (queue, single):
                    await r.zremrangebyrank(q.name, 0, 9)
        scores = [[s for _, s in await r.zrange(q.name, 0, -1, withscores=True)] for q in (queue, single)]
        assert scores[0] == scores[1] and len(scores[0]) == 65
        assert await r.hgetall(queue.finish_tags) == await r.hgetall(single.finish_tags)
        assert await r.get(queue.virtual_time) == await r.get(single.virtual_time)
    finally:
        keys = [single.name, single.finish_tags, single.virtual_time, *single.wake_keys]
        await r.delete(*keys, *[f"arq:job:{d.job_id}:0" for d in made])
