"""The HTTP contract of /schedules: create, read, change, delete; 422s naming fields; ownership."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.utils import db
from tests.utils.stack import Stack

JOB = {"type": "square_sum", "payload": {"data": [1, 2]}}


@pytest.fixture(autouse=True)
async def no_schedules_left(stack: Stack) -> AsyncIterator[None]:
    """The shared stack's workers fire schedules: none made here may keep making jobs for later tests."""
    yield
    await db.execute(stack.settings, "DELETE FROM schedules")


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/schedules", json={"name": "nightly", "job": JOB, **body})
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/schedules/{schedule['id']}"
    return schedule


async def test_create_returns_the_schedule_with_its_next_slot(client: httpx.AsyncClient) -> None:
    schedule = await create(client, cron="0 9 * * 1-5", timezone="Europe/Paris", overlap="skip")
    assert schedule["cron"] == "0 9 * * 1-5" and schedule["every_seconds"] is None
    assert schedule["timezone"] == "Europe/Paris" and schedule["overlap"] == "skip"
    assert schedule["paused"] is False and schedule["job"] == JOB
    assert (
        schedule["last_run_at"] is None and schedule["last_job_id"] is None and schedule["owner_id"] is None
    )
    local = datetime.fromisoformat(schedule["next_run_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
    assert uuid.UUID(schedule["id"]).version == 7


async def test_defaults_and_every_seconds(client: httpx.AsyncClient) -> None:
    schedule = await create(client, every_seconds=3600)
    assert schedule["timezone"] == "UTC" and schedule["overlap"] == "allow" and schedule["cron"] is None
    created = datetime.fromisoformat(schedule["created_at"])
    assert (
        timedelta(minutes=59)
        < datetime.fromisoformat(schedule["next_run_at"]) - created
        < timedelta(hours=1, seconds=1)
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "x", "job": JOB}, ["body", "every_seconds"]),
        ({"name": "x", "job": JOB, "cron": "* * * * *", "every_seconds": 5}, ["body", "every_seconds"]),
        ({"name": "x", "job": JOB, "every_seconds": 0}, ["body", "every_seconds"]),
        ({"name": "x", "job": JOB, "cron": "every day"}, ["body", "cron"]),
        ({"name": "x", "job": JOB, "cron": "0 25 * * *"}, ["body", "cron"]),
        ({"name": "x", "job": JOB, "every_seconds": 5, "timezone": "Europe/Atlantis"}, ["body", "timezone"]),
        ({"name": "x", "job": JOB, "every_seconds": 5, "overlap": "queue"}, ["body", "overlap"]),
        ({"name": "x", "every_seconds": 5}, ["body", "job"]),
        (
            {"name": "x", "every_seconds": 5, "job": {"type": "csv_report", "payload": {"rows": 0}}},
            ["body", "job", "csv_report", "payload", "rows"],
        ),
        ({"name": "x", "every_seconds": 5, "job": {"type": "nope", "payload": {}}}, ["body", "job", "type"]),
        ({"name": "x", "every_seconds": 5, "job": JOB, "extra": 1}, ["body", "extra"]),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post("/schedules", json=body)
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]], response.text


async def test_list_get_patch_delete(client: httpx.AsyncClient) -> None:
    first = await create(client, every_seconds=60)
    second = await create(client, cron="*/5 * * * *", name="five")
    listed = (await client.get("/schedules")).json()
    assert [s["id"] for s in listed["items"]] == [first["id"], second["id"]] and listed["next_cursor"] is None
    page = (await client.get("/schedules", params={"limit": 1})).json()
    assert [s["id"] for s in page["items"]] == [first["id"]]
    rest = (await client.get("/schedules", params={"cursor": page["next_cursor"]})).json()
    assert [s["id"] for s in rest["items"]] == [second["id"]]
    assert (await client.get("/schedules", params={"cursor": "garbage!"})).status_code == 422

    assert (await client.get(f"/schedules/{first['id']}")).json() == first

    patched = await client.patch(
        f"/schedules/{first['id']}", json={"cron": "0 * * * *", "timezone": "Asia/Tokyo"}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["cron"] == "0 * * * *" and body["every_seconds"] is None and body["timezone"] == "Asia/Tokyo"
    assert datetime.fromisoformat(body["next_run_at"]).minute == 0

    paused = (
        await client.patch(f"/schedules/{first['id']}", json={"paused": True, "name": "renamed"})
    ).json()
    assert paused["paused"] is True and paused["next_run_at"] is None and paused["name"] == "renamed"
    resumed = (
        await client.patch(f"/schedules/{first['id']}", json={"paused": False, "every_seconds": 30})
    ).json()
    assert resumed["next_run_at"] is not None and resumed["cron"] is None and resumed["every_seconds"] == 30

    job = {"type": "sleep", "payload": {"seconds": 1}}
    assert (await client.patch(f"/schedules/{first['id']}", json={"job": job})).json()["job"] == job
    for bad, loc in [
        ({"cron": "* * * * *", "every_seconds": 5}, ["body", "every_seconds"]),
        ({"paused": None}, ["body", "paused"]),
        ({"timezone": "Nowhere"}, ["body", "timezone"]),
        ({"job": {"type": "square_sum", "payload": {}}}, ["body", "job", "square_sum", "payload", "data"]),
    ]:
        response = await client.patch(f"/schedules/{first['id']}", json=bad)
        assert response.status_code == 422 and loc in [e["loc"] for e in response.json()["detail"]], bad

    assert (await client.delete(f"/schedules/{first['id']}")).status_code == 204
    assert (await client.get(f"/schedules/{first['id']}")).status_code == 404
    assert (await client.delete(f"/schedules/{first['id']}")).status_code == 404
    assert [s["id"] for s in (await client.get("/schedules")).json()["items"]] == [second["id"]]


async def test_another_keys_schedule_is_404(stack: Stack, client: httpx.AsyncClient) -> None:
    schedule = await create(client, every_seconds=60)
    async with await stack.client() as other:
        for method in ("GET", "PATCH", "DELETE"):
            kwargs: dict[str, Any] = {"json": {"name": "mine"}} if method == "PATCH" else {}
            response = await other.request(method, f"/schedules/{schedule['id']}", **kwargs)
            assert response.status_code == 404 and response.json() == {"detail": "Schedule not found"}
        assert (await other.get("/schedules")).json()["items"] == []
        assert (await other.get("/schedules", params={"owner": "all"})).status_code == 403
    assert (await client.get(f"/schedules/{schedule['id']}")).json()["name"] == "nightly"


async def test_admin_sees_every_keys_schedules(stack: Stack, client: httpx.AsyncClient) -> None:
    schedule = await create(client, every_seconds=60)
    async with await stack.admin_client() as admin:
        everyone = (await admin.get("/schedules", params={"owner": "all", "limit": 100})).json()["items"]
        mine = [s for s in everyone if s["id"] == schedule["id"]]
        assert len(mine) == 1 and mine[0]["owner_id"] is not None
        owner = mine[0]["owner_id"]
        theirs = (await admin.get("/schedules", params={"owner": owner})).json()["items"]
        assert [s["id"] for s in theirs] == [schedule["id"]]
        assert (await admin.get("/schedules")).json()["items"] == []  # an admin's own, by default
        assert (await admin.patch(f"/schedules/{schedule['id']}", json={"paused": True})).status_code == 200


async def test_schedules_per_key_are_limited(isolated: Any) -> None:
    async with isolated(workers=0, max_schedules_per_key=2) as stack, await stack.client() as client:
        await create(client, every_seconds=60)
        await create(client, every_seconds=60)
        response = await client.post("/schedules", json={"name": "third", "every_seconds": 60, "job": JOB})
        assert response.status_code == 422
        assert "MAX_SCHEDULES_PER_KEY" in response.json()["detail"][0]["msg"]


async def test_job_views_carry_schedule_id(client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs", json=JOB)).json()
    assert job["schedule_id"] is None
