"""Server-Sent Events: streams per key are capped, streams end after a lifetime and resume with
Last-Event-ID, and one poll per API process serves every stream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from backend.api.state import AppState
from tests.utils.stack import Stack, submit

LATER = "2999-01-01T00:00:00Z"


def app_state(stack: Stack) -> AppState:
    assert stack.app is not None
    state: AppState = stack.app.state.platform
    return state


async def read_stream(client: httpx.AsyncClient, job_id: str, **headers: str) -> list[str]:
    async with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return [line async for line in response.aiter_lines() if line]


async def test_streams_per_key_are_capped(isolated: Any) -> None:
    async with (
        isolated(workers=0, sse_max_streams_per_key=2, sse_max_seconds=2) as stack,
        await stack.client() as a,
        await stack.client() as b,
    ):
        job = await submit(a, "sleep", {"seconds": 0}, scheduled_at=LATER)
        open_streams = [asyncio.create_task(read_stream(a, job["id"])) for _ in range(2)]
        await asyncio.sleep(0.3)
        refused = await a.get(f"/jobs/{job['id']}/events")
        assert refused.status_code == 429 and refused.headers["retry-after"]
        other = await submit(b, "sleep", {"seconds": 0}, scheduled_at=LATER)
        assert len(await read_stream(b, other["id"])) >= 1  # another key is not affected
        await asyncio.gather(*open_streams)
        assert len(await read_stream(a, job["id"])) >= 1  # closed streams free their slots


async def test_a_stream_ends_after_its_lifetime_and_resumes_where_it_left(isolated: Any) -> None:
    async with isolated(workers=0, sse_max_seconds=1) as stack, await stack.client() as client:
        job = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER)
        started = time.monotonic()
        first = await read_stream(client, job["id"])
        assert 0.8 < time.monotonic() - started < 5
        assert first[0].startswith("retry: ")
        ids = [line[4:] for line in first if line.startswith("id: ")]
        data = [json.loads(line[6:]) for line in first if line.startswith("data: ")]
        assert len(ids) == 1 and data[0]["status"] == "pending"
        again = await read_stream(client, job["id"], **{"Last-Event-ID": ids[0]})
        assert not [line for line in again if line.startswith("data: ")], "an unchanged state was sent again"
        await client.post(f"/jobs/{job['id']}/cancel")
        after = await read_stream(client, job["id"], **{"Last-Event-ID": ids[0]})
        assert json.loads(after[-1][6:])["status"] == "cancelled"


async def test_one_poll_serves_every_stream(isolated: Any) -> None:
    async with isolated(workers=0, sse_max_seconds=1) as stack, await stack.client() as client:
        jobs = [await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER) for _ in range(8)]
        watcher = app_state(stack).watcher
        before = watcher.polls
        started = time.monotonic()
        await asyncio.gather(*(read_stream(client, job["id"]) for job in jobs))
        elapsed = time.monotonic() - started
        polls = watcher.polls - before
        assert polls <= elapsed / watcher.interval_s + 2, (polls, elapsed)  # not 8 streams x that
