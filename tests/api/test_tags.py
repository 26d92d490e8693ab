"""Tags on jobs and search by id or name: GET /jobs?tag=&q=, and the same filters in bulk actions."""

from __future__ import annotations

import httpx

from tests.utils.stack import submit

LATER = "2999-01-01T00:00:00Z"


async def _ids(client: httpx.AsyncClient, **params: object) -> set[str]:
    r = await client.get("/jobs", params=params)
    assert r.status_code == 200, r.text
    return {job["id"] for job in r.json()["items"]}


async def test_tags_are_stored_and_filter_with_all_of(client: httpx.AsyncClient) -> None:
    a = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER, tags=["nightly", "eu", "eu"])
    b = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER, tags=["nightly"])
    await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER)
    assert a["tags"] == ["eu", "nightly"]
    assert await _ids(client, tag="nightly") == {a["id"], b["id"]}
    assert await _ids(client, tag=["nightly", "eu"]) == {a["id"]}
    assert await _ids(client, tag="none") == set()


async def test_search_by_id_or_name_prefix(client: httpx.AsyncClient) -> None:
    a = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER, name="Invoices 100%")
    b = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER, name="invoices_eu")
    c = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER, name="payroll")
    assert await _ids(client, q="invoices") == {a["id"], b["id"]}
    assert await _ids(client, q="Invoices 100%") == {a["id"]}  # % is a character, not a wildcard
    assert await _ids(client, q="invoices_") == {b["id"]}
    assert await _ids(client, q=c["id"]) == {c["id"]}


async def test_bad_tags_and_searches_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    body = {"type": "sleep", "payload": {"seconds": 0}}
    for tags in (["x" * 65], [""], [f"t{i}" for i in range(21)], ["a\u0000b"]):
        r = await client.post("/jobs", json={**body, "tags": tags})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "sleep", "tags"], tags
    r = await client.get("/jobs", params={"q": "a\u0000b"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "q"]


async def test_bulk_actions_take_tags_too(client: httpx.AsyncClient) -> None:
    tagged = await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER, tags=["batch-7"])
    await submit(client, "sleep", {"seconds": 0}, scheduled_at=LATER)
    r = await client.post("/jobs/bulk/cancel", json={"tag": ["batch-7"]})
    assert r.json() == {"matched": 1, "changed": 1}
    assert (await client.get(f"/jobs/{tagged['id']}")).json()["status"] == "cancelled"
