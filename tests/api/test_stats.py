"""GET /stats: who sees what, the response's shape, and 422s naming the field."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from backend.services.stats import refresh_stats
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for


async def fold(stack: Stack) -> None:
    """Bring the rollups up to date now (a worker's cron may be folding too: wait for a drained run)."""
    async with db.pool(stack.settings) as pool:
        for _ in range(200):
            if (await refresh_stats(pool)).drained:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the stats events were not drained")


async def run_jobs(client: httpx.AsyncClient, n: int) -> str:
    """n completed jobs; returns the key's id (from the job, read with an admin key by the caller)."""
    jobs = [await submit(client, "square_sum", {"data": [1, 2]}) for _ in range(n)]
    for job in jobs:
        await wait_for(client, job["id"], {"completed"})
    return str(jobs[0]["id"])


async def owner_id(stack: Stack, job_id: str) -> str:
    rows = await db.fetch(stack.settings, "SELECT owner_id FROM jobs WHERE id = $1", uuid.UUID(job_id))
    return str(rows[0][0])


def totals(response: httpx.Response) -> dict[str, int]:
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()["totals"]
    return result


async def test_each_key_sees_its_own_and_an_admin_everyones(stack: Stack) -> None:
    async with await stack.client() as one, await stack.client() as two, await stack.admin_client() as admin:
        one_owner = await owner_id(stack, await run_jobs(one, 2))
        await run_jobs(two, 3)
        await fold(stack)
        mine, theirs = await one.get("/stats?window=1h"), await two.get("/stats?window=1h")
        assert totals(mine) == {"created": 2, "completed": 2, "failed": 0, "cancelled": 0}
        assert totals(theirs)["completed"] == 3
        everyone = totals(await admin.get("/stats", params={"window": "1h"}))
        assert totals(await admin.get("/stats", params={"window": "1h", "owner": "all"})) == everyone
        assert everyone["completed"] >= 5
        assert totals(await admin.get("/stats", params={"window": "1h", "owner": one_owner})) == totals(mine)
        forbidden = await one.get("/stats", params={"owner": one_owner})
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "Admin API key required"}


async def test_the_response_has_every_bucket_and_field(stack: Stack, client: httpx.AsyncClient) -> None:
    await run_jobs(client, 1)
    await fold(stack)
    body = (await client.get("/stats", params={"window": "7d", "type": "square_sum"})).json()
    assert (body["window"], body["bucket_seconds"], body["type"], len(body["buckets"])) == (
        "7d",
        3600,
        "square_sum",
        168,
    )
    starts = [b["start"] for b in body["buckets"]]
    assert starts == sorted(starts)
    assert set(body["buckets"][0]) == {
        "start",
        "created",
        "completed",
        "failed",
        "cancelled",
        "wait_p50",
        "wait_p95",
        "run_p50",
        "run_p95",
    }
    last = body["buckets"][-1] if body["buckets"][-1]["completed"] else body["buckets"][-2]
    assert last["completed"] == 1 and last["run_p50"] is not None
    assert body["buckets"][0]["wait_p50"] is None  # no sample: null, not 0
    assert body["by_type"] == {
        "square_sum": {"created": 1, "completed": 1, "failed": 0, "cancelled": 0, "failure_rate": 0.0}
    }
    assert body["now"] == {"pending": 0, "running": 0, "oldest_wait_seconds": 0.0}
    assert body["as_of"] is not None
    default = (await client.get("/stats")).json()
    assert (default["window"], len(default["buckets"])) == ("24h", 96)


async def test_bad_parameters_get_422_naming_the_field(client: httpx.AsyncClient) -> None:
    for params, field in (
        ({"window": "2h"}, "window"),
        ({"type": "nope"}, "type"),
        ({"owner": "someone"}, "owner"),
    ):
        response = await client.get("/stats", params=params)
        assert response.status_code == 422, response.text
        assert [e["loc"] for e in response.json()["detail"]] == [["query", field]], response.text


async def test_stats_needs_a_key(stack: Stack) -> None:
    assert stack.app_client is not None
    assert (await stack.app_client.get("/stats")).status_code == 401
    spec: dict[str, Any] = (await stack.app_client.get("/openapi.json")).json()
    operation = spec["paths"]["/stats"]["get"]
    assert {"200", "401", "403", "422", "429"} <= set(operation["responses"])
    assert operation["summary"]
