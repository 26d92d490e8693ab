"""Dependencies, batches and bundles against real PostgreSQL, Redis and worker processes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from backend.db.pool import retry_deadlocks
from backend.domain.records import Delivery
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for

LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def batch(client: httpx.AsyncClient, jobs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = await client.post("/batches", json={"jobs": jobs, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def job_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/jobs?limit=100")).json()["items"])


def square(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "square_sum", "payload": {"data": [n]}, **extra}


async def wait_batch_done(client: httpx.AsyncClient, batch_id: str, timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        view: dict[str, Any] = (await client.get(f"/batches/{batch_id}")).json()
        if view["done"]:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} not done: {view}")


async def test_a_chain_of_100_runs_in_order(stack: Stack, client: httpx.AsyncClient) -> None:
    jobs = [square(0)] + [square(i, depends_on=[f"#{i - 1}"]) for i in range(1, 100)]
    created = await batch(client, jobs, name="chain")
    assert created["counts"] == {"pending": 1, "blocked": 99} and not created["done"]
    ids = [j["id"] for j in created["jobs"]]
    assert all(j["batch_id"] == created["id"] for j in created["jobs"])
    assert created["jobs"][5]["depends_on"] == [ids[4]]
    view = await wait_batch_done(client, created["id"], timeout=90)
    assert view["counts"] == {"completed": 100} and view["name"] == "chain"
    assert set(view) == {"id", "name", "created_at", "counts", "done"}
    rows = await db.fetch(
        stack.settings,
        "SELECT job_id, started_at FROM job_runs WHERE job_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids],
    )
    started = {str(r["job_id"]): r["started_at"] for r in rows}
    assert len(rows) == 100  # one run each
    assert [started[i] for i in ids] == sorted(started.values())
    listed = (await client.get(f"/jobs?batch_id={created['id']}&limit=100")).json()["items"]
    assert {j["id"] for j in listed} == set(ids)


async def test_fan_in_of_1000_parents_into_one_bundle(stack: Stack, client: httpx.AsyncClient) -> None:
    """A full batch of parents (every tenth a CSV file), then one bundle naming all 1,000 of them by id."""
    parents = [
        {"type": "csv_report", "payload": {"rows": 5, "seed": i}} if i % 10 == 0 else square(i)
        for i in range(1000)
    ]
    created = await batch(client, parents)
    ids = [j["id"] for j in created["jobs"]]
    bundle = await submit(client, "bundle", {"filename": "all.zip"}, depends_on=ids)
    assert bundle["status"] in ("blocked", "pending") and bundle["depends_on"] == ids
    done = await wait_for(client, bundle["id"], {"completed", "cancelled", "failed"}, timeout=180)
    assert done["status"] == "completed", done
    assert done["result"] == {"files": 100, "jobs": 1000}
    download = await client.get(done["result_file"]["url"])
    assert download.status_code == 200
    data = download.content
    assert len(data) == done["result_file"]["size_bytes"]
    assert hashlib.sha256(data).hexdigest() == done["result_file"]["sha256"]
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    results = json.loads(archive.read("results.json"))["jobs"]
    assert [r["id"] for r in results] == ids
    assert results[61]["result"] == {"value": 61 * 61} and results[61]["file"] is None
    for i in range(0, 1000, 10):
        parent = (await client.get(f"/jobs/{ids[i]}")).json()
        inside = archive.read(results[i]["file"])
        assert hashlib.sha256(inside).hexdigest() == parent["result_file"]["sha256"]
        assert results[i]["file"].endswith(parent["result_file"]["filename"])
    assert len(archive.namelist()) == 101


async def test_parents_ending_together_promote_the_child_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """Two transactions end the two parents at the same moment: whichever commits second sees the first
    (the child's row lock), so the child always moves, and `WHERE status = 'blocked'` moves it once."""
    async with db.pool(stack.settings) as pool:
        for _ in range(10):
            created = await batch(
                client,
                [
                    square(1, scheduled_at=LATER),
                    square(2, scheduled_at=LATER),
                    square(3, depends_on=["#0", "#1"], scheduled_at=LATER),
                ],
            )
            p1, p2, child = (uuid.UUID(j["id"]) for j in created["jobs"])
            a, b = await pool.acquire(), await pool.acquire()
            try:
                ta, tb = a.transaction(), b.transaction()
                await ta.start()
                await tb.start()
                end = "UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = $1"
                await a.execute(end, p1)
                ending_b = asyncio.create_task(b.execute(end, p2))  # waits on the child's row lock
                await asyncio.sleep(0.05)
                await ta.commit()
                await ending_b
                await tb.commit()
            finally:
                await pool.release(a)
                await pool.release(b)
            status = await pool.fetchval("SELECT status FROM jobs WHERE id = $1", child)
            assert status == "pending"


async def test_ends_sharing_children_in_opposite_orders_survive_the_deadlock(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """Two transactions each end one parent of child X and one of child Y, in opposite orders: the
    trigger's child locks deadlock, PostgreSQL rolls one back whole, and `retry_deadlocks` runs it again;
    both children move once."""
    created = await batch(
        client,
        [
            *(square(i, scheduled_at=LATER) for i in range(4)),
            square(4, depends_on=["#0", "#2"], scheduled_at=LATER),  # X: a parent in each transaction
            square(5, depends_on=["#1", "#3"], scheduled_at=LATER),  # Y: likewise
        ],
    )
    p0, p1, p2, p3, x, y = (uuid.UUID(j["id"]) for j in created["jobs"])
    end = "UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = $1 AND status = 'pending'"
    calls: list[str] = []
    async with db.pool(stack.settings) as pool:
        first_done = [asyncio.Event(), asyncio.Event()]

        def ending(me: int, first: uuid.UUID, second: uuid.UUID) -> Callable[[], Awaitable[None]]:
            async def attempt() -> None:
                calls.append(f"t{me}")
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(end, first)  # locks one child
                    first_done[me].set()
                    await first_done[1 - me].wait()  # the other holds the other child now
                    await conn.execute(end, second)

            return attempt

        await asyncio.gather(
            retry_deadlocks(ending(0, p0, p1)),  # locks X, then wants Y
            retry_deadlocks(ending(1, p3, p2)),  # locks Y, then wants X
        )
        statuses = await pool.fetch("SELECT id, status FROM jobs WHERE id = ANY($1::uuid[])", [x, y])
    assert {r["status"] for r in statuses} == {"pending"}
    assert len(calls) == 3  # one of the two was the deadlock's victim and ran again


async def test_duplicate_deliveries_never_run_a_child_twice(stack: Stack, client: httpx.AsyncClient) -> None:
    created = await batch(
        client,
        [
            {"type": "sleep", "payload": {"seconds": 0.3}},
            {"type": "sleep", "payload": {"seconds": 0.3}},
            square(2, depends_on=["#0", "#1"]),
        ],
    )
    p1, p2, child = (j["id"] for j in created["jobs"])
    assert created["jobs"][2]["status"] == "blocked"
    async with db.resources(stack.settings) as res:
        # Deliveries of a blocked child and duplicates of the parents' are refused at claim.
        dup = [Delivery(uuid.UUID(child), 0), Delivery(uuid.UUID(p1), 0), Delivery(uuid.UUID(p2), 0)]
        await res.queue.enqueue_many(dup)
        await wait_for(client, child, {"completed"})
        await res.queue.enqueue_many([Delivery(uuid.UUID(child), 0), Delivery(uuid.UUID(p1), 1)])
        await asyncio.sleep(1.0)
    runs = await db.fetch(stack.settings, "SELECT * FROM job_runs WHERE job_id = $1", uuid.UUID(child))
    assert len(runs) == 1
    again = await db.execute(
        stack.settings,
        "UPDATE jobs SET status = 'completed' WHERE id = $1 AND status = 'completed'",
        uuid.UUID(p1),
    )
    assert again == "UPDATE 1"  # an end replayed: no status change, no second promotion
    assert (await client.get(f"/jobs/{child}")).json()["attempts"] == 1


async def test_a_failed_parent_cancels_its_descendants(client: httpx.AsyncClient) -> None:
    created = await batch(
        client,
        [
            {"type": "sleep", "payload": {"seconds": 0, "fail_first": 5}, "max_attempts": 1},
            square(1, depends_on=["#0"]),
            square(2, depends_on=["#1"]),
        ],
    )
    parent, child, grandchild = (j["id"] for j in created["jobs"])
    assert (await wait_for(client, parent, {"failed"}))["status"] == "failed"
    c = await wait_for(client, child, {"cancelled"})
    g = await wait_for(client, grandchild, {"cancelled"})
    assert c["error"] == f"dependency {parent} failed" and c["finished_at"]
    assert g["error"] == f"dependency {child} cancelled"
    # A job submitted after its parent failed is cancelled at once, naming it.
    late = await submit(client, "square_sum", {"data": [1]}, depends_on=[parent])
    assert late["status"] == "cancelled" and late["error"] == f"dependency {parent} failed"


async def test_cancelling_a_blocked_job_and_a_batch(client: httpx.AsyncClient) -> None:
    parent = await submit(client, "square_sum", {"data": [1]}, scheduled_at=LATER)
    child = await submit(client, "square_sum", {"data": [1]}, depends_on=[parent["id"]])
    assert child["status"] == "blocked" and child["depends_on"] == [parent["id"]]
    cancelled = await client.post(f"/jobs/{child['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    created = await batch(client, [square(1, scheduled_at=LATER), square(2, depends_on=["#0"])])
    view = (await client.post(f"/batches/{created['id']}/cancel")).json()
    assert view == {**view, "name": None, "counts": {"cancelled": 2}, "done": True}
    jobs = (await client.get(f"/jobs?batch_id={created['id']}")).json()["items"]
    assert {j["error"] for j in jobs} == {"cancelled by request"}


async def test_batch_events_stream_until_done(client: httpx.AsyncClient) -> None:
    created = await batch(client, [square(1), square(2, depends_on=["#0"])])
    events = []
    async with client.stream("GET", f"/batches/{created['id']}/events") as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["done"] and events[-1]["counts"] == {"completed": 2}


async def test_a_batch_with_one_bad_job_creates_nothing(client: httpx.AsyncClient) -> None:
    bad_payload = await client.post(
        "/batches", json={"jobs": [square(1), {"type": "square_sum", "payload": {}}]}
    )
    assert bad_payload.status_code == 422
    assert bad_payload.json()["detail"][0]["loc"][:4] == ["body", "jobs", 1, "square_sum"]
    unknown = str(uuid.uuid4())
    bad_parent = await client.post(
        "/batches", json={"jobs": [square(1), square(2, depends_on=["#0", unknown])]}
    )
    assert bad_parent.status_code == 422
    assert bad_parent.json()["detail"][0]["loc"] == ["body", "jobs", 1, "depends_on", 1]
    forward = await client.post("/batches", json={"jobs": [square(1, depends_on=["#1"]), square(2)]})
    assert forward.status_code == 422 and forward.json()["detail"][0]["loc"] == [
        "body",
        "jobs",
        0,
        "depends_on",
        0,
    ]
    assert await job_count(client) == 0


async def test_no_cycle_can_be_formed(client: httpx.AsyncClient) -> None:
    """A parent must exist before its child (an id of an existing job, or an earlier sibling), so every
    dependency points back in time: a self-reference or a forward one is refused, and an existing job's
    `depends_on` never changes."""
    itself = await client.post("/batches", json={"jobs": [square(1, depends_on=["#0"])]})
    assert itself.status_code == 422 and itself.json()["detail"][0]["type"] == "forward_reference"
    later = str(uuid.uuid4())  # an id no job has yet: refused, it cannot be pointed at ahead of time
    response = await client.post("/jobs", json={**square(1), "depends_on": [later]})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "depends_on", 0]


async def test_dependency_422s_name_the_field(stack: Stack, client: httpx.AsyncClient) -> None:
    no_parents = await client.post("/jobs", json={"type": "bundle", "payload": {}})
    assert no_parents.status_code == 422 and no_parents.json()["detail"][0]["loc"] == ["body", "depends_on"]
    sibling = await client.post("/jobs", json={**square(1), "depends_on": ["#0"]})
    assert sibling.status_code == 422 and sibling.json()["detail"][0]["loc"] == ["body", "depends_on", 0]
    too_many = await client.post(
        "/jobs", json={**square(1), "depends_on": [str(uuid.uuid4()) for _ in range(1001)]}
    )
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"][-1] == "depends_on"
    async with await stack.client() as other:
        theirs = await submit(other, "square_sum", {"data": [1]})
    foreign = await client.post("/jobs", json={**square(1), "depends_on": [theirs["id"]]})
    assert foreign.status_code == 422 and foreign.json()["detail"][0]["loc"] == ["body", "depends_on", 0]
    empty = await client.post("/batches", json={"jobs": []})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "jobs"]


async def test_a_batch_replays_with_its_idempotency_key(client: httpx.AsyncClient) -> None:
    body = {"name": "nightly", "jobs": [square(1), square(2, depends_on=["#0"])]}
    first = await client.post("/batches", json=body, headers={"Idempotency-Key": "batch-1"})
    again = await client.post("/batches", json=body, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert first.headers["Location"] == f"/batches/{first.json()['id']}"
    other = await client.post("/batches", json={**body, "name": "x"}, headers={"Idempotency-Key": "batch-1"})
    assert other.status_code == 422
    assert await job_count(client) == 2


async def test_a_full_batch_of_1000_commits_in_one_request(client: httpx.AsyncClient) -> None:
    singles = 50
    started = time.perf_counter()
    for i in range(singles):
        await submit(client, "square_sum", {"data": [i]}, scheduled_at=LATER)
    single_rate = singles / (time.perf_counter() - started)
    started = time.perf_counter()
    created = await batch(client, [square(i, scheduled_at=LATER) for i in range(1000)])
    batch_rate = 1000 / (time.perf_counter() - started)
    assert created["counts"] == {"pending": 1000} and len(created["jobs"]) == 1000
    print(f"accepted: {single_rate:.0f} jobs/s one by one, {batch_rate:.0f} jobs/s in a batch of 1,000")
    view = (await client.post(f"/batches/{created['id']}/cancel")).json()
    assert view["counts"] == {"cancelled": 1000} and view["done"]
