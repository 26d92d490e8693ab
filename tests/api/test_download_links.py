"""Download links: signed, expiring, keyless, Range and ETag as on /download; revoke, tamper, expiry."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from backend.services.links import LinkService
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for


async def report(client: httpx.AsyncClient) -> dict[str, Any]:
    job = await submit(client, "csv_report", {"rows": 200})
    return await wait_for(client, job["id"], {"completed"})


def anonymous(stack: Stack) -> httpx.AsyncClient:
    assert stack.app_client is not None
    return httpx.AsyncClient(transport=stack.app_client._transport, base_url="http://test")


async def test_link_serves_the_file_without_a_key(client: httpx.AsyncClient, stack: Stack) -> None:
    job = await report(client)
    made = await client.post(f"/jobs/{job['id']}/download-link", json={"expires_in": 120})
    assert made.status_code == 201, made.text
    link = made.json()
    assert link["url"].startswith("/links/")
    expected = (await client.get(f"/jobs/{job['id']}/download")).content
    async with anonymous(stack) as anon:
        full = await anon.get(link["url"])
        assert full.status_code == 200 and full.content == expected
        etag = full.headers["etag"]
        assert etag == f'"{job["result_file"]["sha256"]}"'
        part = await anon.get(link["url"], headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == expected[:10]
        assert (await anon.get(link["url"], headers={"If-None-Match": etag})).status_code == 304
        head = await anon.head(link["url"])
        assert head.status_code == 200 and head.content == b""
        tampered = link["url"][:-2] + ("AA" if not link["url"].endswith("AA") else "BB")
        assert (await anon.get(tampered)).status_code == 404
        assert (await anon.get("/links/nonsense")).status_code == 404
        assert (await anon.get("/links/a.b.c.%C3%A9")).status_code == 404  # non-ASCII signature: no 500


async def test_default_and_bounds(client: httpx.AsyncClient) -> None:
    job = await report(client)
    made = await client.post(f"/jobs/{job['id']}/download-link")
    assert made.status_code == 201
    for bad in (59, 604801, "3600"):
        response = await client.post(f"/jobs/{job['id']}/download-link", json={"expires_in": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["body", "expires_in"]


async def test_expired_link_is_403(client: httpx.AsyncClient, stack: Stack) -> None:
    job = await report(client)
    async with db.pool(stack.settings) as pool:
        owner = await pool.fetchval("SELECT owner_id FROM jobs WHERE id = $1::uuid", job["id"])
        token, _ = await LinkService(pool).issue(uuid.UUID(job["id"]), owner, -10)
    async with anonymous(stack) as anon:
        assert (await anon.get(f"/links/{token}")).status_code == 403


async def test_revoking_the_key_kills_its_links(stack: Stack) -> None:
    async with await stack.admin_client() as admin, await stack.client() as client:
        job = await report(client)
        link = (await client.post(f"/jobs/{job['id']}/download-link")).json()
        async with anonymous(stack) as anon:
            assert (await anon.get(link["url"])).status_code == 200
            async with db.pool(stack.settings) as pool:
                owner = await pool.fetchval("SELECT owner_id FROM jobs WHERE id = $1::uuid", job["id"])
            assert (await admin.post(f"/admin/keys/{owner}/revoke")).status_code == 200
            assert (await anon.get(link["url"])).status_code == 404
