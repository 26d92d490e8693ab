"""Schedules fired by real worker processes: rhythm, one job per fire, catch-up, overlap, pause, delete."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend.services.schedules import FireReport, fire_due
from tests.utils import db
from tests.utils.stack import Stack, open_stack, wait_for

JOB = {"type": "square_sum", "payload": {"data": [1, 2]}}
FIRED = "SELECT id, schedule_fire_at, status FROM jobs WHERE schedule_id = $1 ORDER BY schedule_fire_at"


@pytest.fixture(scope="module")
async def trio(
    servers: tuple[str, str], template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """One platform with three worker processes, all of them firing schedules."""
    admin_url, redis_url = servers
    async with open_stack(admin_url, redis_url, tmp_path_factory.mktemp("trio"), workers=3) as stack:
        yield stack


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/schedules", json={"name": "s", "job": JOB, **body})
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


async def fired(stack: Stack, schedule_id: str) -> list[Any]:
    return await db.fetch(stack.settings, FIRED, schedule_id)


async def until(predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_every_second_across_three_workers_makes_one_job_per_second(trio: Stack) -> None:
    async with await trio.client() as client:
        schedule = await create(client, every_seconds=1)
        # Timed from the first fire: the workers may still be starting when the schedule is created.
        await until(lambda: _has_jobs(trio, schedule["id"]), timeout=30)
        await asyncio.sleep(10)
        await client.patch(f"/schedules/{schedule['id']}", json={"paused": True})
        jobs = await fired(trio, schedule["id"])
        slots = [j["schedule_fire_at"] for j in jobs]
        in_window = [t for t in slots if t < slots[0] + timedelta(seconds=10)]
        assert 8 <= len(in_window) <= 12, slots
        assert len(set(slots)) == len(slots)
        assert all((b - a) % timedelta(seconds=1) == timedelta(0) for a, b in itertools.pairwise(slots)), (
            slots
        )
        view = await wait_for(client, str(jobs[0]["id"]), {"completed"})
        assert view["schedule_id"] == schedule["id"] and view["name"] == "s"
        again = (await client.get(f"/schedules/{schedule['id']}")).json()
        assert again["last_job_id"] == str(jobs[-1]["id"])


async def test_after_downtime_one_catch_up_fire_then_the_grid(trio: Stack) -> None:
    async with await trio.client() as client:
        schedule = await create(client, every_seconds=60, paused=True)
        # As if every worker had been down for five minutes: the slot is long past.
        slot = await db.fetch(
            trio.settings,
            "UPDATE schedules SET next_run_at = now() - interval '5 minutes', paused = false WHERE id = $1 "
            "RETURNING next_run_at",
            schedule["id"],
        )
        await until(lambda: _has_jobs(trio, schedule["id"]))
        await asyncio.sleep(1.5)  # three workers polling twice a second: a burst would show by now
        jobs = await fired(trio, schedule["id"])
        assert len(jobs) == 1 and jobs[0]["schedule_fire_at"] == slot[0]["next_run_at"]
        row = (
            await db.fetch(
                trio.settings, "SELECT next_run_at, now() AS now FROM schedules WHERE id = $1", schedule["id"]
            )
        )[0]
        assert row["now"] < row["next_run_at"] <= row["now"] + timedelta(seconds=60)
        assert (row["next_run_at"] - slot[0]["next_run_at"]) % timedelta(seconds=60) == timedelta(0)


async def _has_jobs(stack: Stack, schedule_id: str) -> bool:
    return bool(await fired(stack, schedule_id))


async def test_one_job_per_fire_is_the_unique_constraint_not_luck(trio: Stack) -> None:
    """Make a slot due again after it fired (as a worker with a stale view would see it): the workers fire
    it, and the unique (schedule_id, schedule_fire_at) turns the second insert into nothing."""
    async with await trio.client() as client:
        schedule = await create(client, every_seconds=3600, paused=True)
    sid = schedule["id"]
    slot = "UPDATE schedules SET next_run_at = '2026-01-01T00:00:00Z', paused = false WHERE id = $1"
    await db.execute(trio.settings, slot, sid)
    await until(lambda: _has_jobs(trio, sid))
    await db.execute(trio.settings, slot, sid)
    await until(lambda: _moved_on(trio, sid))
    jobs = await fired(trio, sid)
    assert len(jobs) == 1 and jobs[0]["schedule_fire_at"].isoformat() == "2026-01-01T00:00:00+00:00"
    async with db.resources(trio.settings) as res:
        assert await fire_due(res) == FireReport()  # nothing is due any more


async def _moved_on(stack: Stack, schedule_id: str) -> bool:
    rows = await db.fetch(
        stack.settings, "SELECT next_run_at > now() AS later FROM schedules WHERE id = $1", schedule_id
    )
    return bool(rows[0]["later"])


async def test_overlap_skip_waits_for_the_previous_job(trio: Stack) -> None:
    async with await trio.client() as client:
        job = {"type": "sleep", "payload": {"seconds": 3}}
        schedule = await create(client, every_seconds=1, overlap="skip", job=job)
        await until(lambda: _has_jobs(trio, schedule["id"]))
        first = (await fired(trio, schedule["id"]))[0]
        await wait_for(client, str(first["id"]), {"running"})
        await asyncio.sleep(1.5)  # one or two slots pass while it runs
        assert len(await fired(trio, schedule["id"])) == 1
        await wait_for(client, str(first["id"]), {"completed"})
        await until(lambda: _count_is(trio, schedule["id"], 2))
        await client.delete(f"/schedules/{schedule['id']}")


async def _count_is(stack: Stack, schedule_id: str, n: int) -> bool:
    return len(await fired(stack, schedule_id)) >= n


async def test_pause_and_delete_stop_fires(trio: Stack) -> None:
    async with await trio.client() as client:
        schedule = await create(client, every_seconds=1)
        sid = schedule["id"]
        await until(lambda: _has_jobs(trio, sid))
        await client.patch(f"/schedules/{sid}", json={"paused": True})
        paused_at = len(await fired(trio, sid))
        await asyncio.sleep(2)
        assert len(await fired(trio, sid)) == paused_at

        await client.patch(f"/schedules/{sid}", json={"paused": False})
        await until(lambda: _count_is(trio, sid, paused_at + 1))
        assert (await client.delete(f"/schedules/{sid}")).status_code == 204
        made = (await client.get("/jobs", params={"limit": 100})).json()["items"]
        await asyncio.sleep(2)
        after = (await client.get("/jobs", params={"limit": 100})).json()["items"]
        assert len(after) == len(made) > paused_at  # no fire since; the jobs it made stay
        assert all(job["schedule_id"] is None for job in after)
