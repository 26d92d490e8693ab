"""Pausing a job type: its waiting jobs stay waiting (none lost, no attempt spent) until it is resumed."""

from __future__ import annotations

import asyncio

import httpx

from tests.utils.stack import Stack, submit, wait_for


async def test_paused_type_waits_and_runs_after_resume(isolated) -> None:  # type: ignore[no-untyped-def]
    async with isolated(workers=1) as stack:
        assert isinstance(stack, Stack)
        async with await stack.admin_client() as admin:
            paused = await admin.post("/admin/types/sleep/pause")
            assert paused.status_code == 200 and paused.json()["paused"] is True
            types = {t["type"]: t for t in (await admin.get("/admin/types")).json()}
            assert types["sleep"]["paused"] and not types["square_sum"]["paused"]
            held = [await submit(admin, "sleep", {"seconds": 0}) for _ in range(5)]
            other = await submit(admin, "square_sum", {"data": [2]})
            await wait_for(admin, other["id"], {"completed"})  # other types keep flowing
            await asyncio.sleep(2.5)  # longer than a reconcile pass: nothing re-delivers them meanwhile
            for job in held:
                now = (await admin.get(f"/jobs/{job['id']}")).json()
                assert now["status"] == "pending" and now["attempts"] == 0, now
            resumed = await admin.post("/admin/types/sleep/resume")
            assert resumed.status_code == 200 and resumed.json()["paused"] is False
            for job in held:
                done = await wait_for(admin, job["id"], {"completed"})
                assert done["attempts"] == 1


async def test_unknown_type_is_404_and_clients_get_403(stack: Stack, client: httpx.AsyncClient) -> None:
    async with await stack.admin_client() as admin:
        response = await admin.post("/admin/types/nope/pause")
        assert response.status_code == 404 and response.json() == {"detail": "No job type has this name"}
    for path in ("/admin/types/sleep/pause", "/admin/types/sleep/resume"):
        assert (await client.post(path)).status_code == 403
    assert (await client.get("/admin/types")).status_code == 403
