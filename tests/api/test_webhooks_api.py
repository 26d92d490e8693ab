"""The webhook fields and routes over HTTP: validation, secrets, the delivery log's access rules."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.utils.stack import Stack, submit


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "example.com/hook",
        "https://",
        "https://user:pw@example.com/hook",
        "https://example.com/a b",
        "https://example.com:99999/",
        "https://example.com/" + "a" * 2000,
        "",
    ],
)
async def test_bad_webhook_url_is_a_422_naming_it(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post(
        "/jobs", json={"type": "sleep", "payload": {"seconds": 0}, "webhook_url": url}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "sleep", "webhook_url"]


async def test_webhook_url_is_stored_and_shown(client: httpx.AsyncClient) -> None:
    url = "https://example.com/" + "a" * 1980
    job = await submit(client, "sleep", {"seconds": 0}, webhook_url=url, scheduled_at="2999-01-01T00:00:00Z")
    assert job["webhook_url"] == url
    assert (await client.get(f"/jobs/{job['id']}")).json()["webhook_url"] == url
    plain = await submit(client, "sleep", {"seconds": 0}, scheduled_at="2999-01-01T00:00:00Z")
    assert plain["webhook_url"] is None


async def test_secret_is_made_once_per_key_and_rotates(client: httpx.AsyncClient, stack: Stack) -> None:
    first = (await client.get("/webhooks/secret")).json()["secret"]
    assert first == (await client.get("/webhooks/secret")).json()["secret"]
    assert first.startswith("whsec_") and len(base64.b64decode(first[6:])) == 24
    rotated = await client.post("/webhooks/secret/rotate")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != first
    assert (await client.get("/webhooks/secret")).json()["secret"] == rotated.json()["secret"]
    async with await stack.client() as other:
        assert (await other.get("/webhooks/secret")).json()["secret"] != rotated.json()["secret"]


async def test_secret_is_not_stored_in_the_clear(client: httpx.AsyncClient, stack: Stack) -> None:
    from tests.utils import db

    secret = (await client.get("/webhooks/secret")).json()["secret"]
    async with db.pool(stack.settings) as pool:
        rows = await pool.fetch("SELECT sealed FROM webhook_secrets")
    raw = base64.b64decode(secret[6:])
    assert rows and all(secret.encode() not in r["sealed"] and raw not in r["sealed"] for r in rows)


async def test_delivery_log_and_redeliver_rules(client: httpx.AsyncClient, stack: Stack) -> None:
    job = await submit(client, "sleep", {"seconds": 0}, scheduled_at="2999-01-01T00:00:00Z")
    assert (await client.get(f"/jobs/{job['id']}/webhooks")).json() == []
    assert (await client.post(f"/jobs/{job['id']}/webhooks/redeliver")).status_code == 409
    async with await stack.client() as other:
        assert (await other.get(f"/jobs/{job['id']}/webhooks")).status_code == 404
        assert (await other.post(f"/jobs/{job['id']}/webhooks/redeliver")).status_code == 404
    assert (await client.get("/webhooks/secret", headers={"X-API-Key": "nope"})).status_code == 401
