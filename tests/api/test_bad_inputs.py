"""Inputs that used to reach the database or the fingerprint and end in a 500 are 4xx naming the field."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.utils import db
from tests.utils.stack import Stack, serve_api

# Out of range once in UTC, or the two instants asyncpg would store as -infinity and infinity.
OUT_OF_UTC = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00Z"]
NOT_RFC3339 = ["0.5", "1700000000", "2026-01-31", "2026-01-31T09:30"]
SLEEP = {"type": "sleep", "payload": {"seconds": 0}}


def locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


def cursor(created: str) -> str:
    raw = f"{created}|{uuid.uuid4()}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("value", OUT_OF_UTC)
async def test_date_times_outside_utc_are_422_naming_the_field(client: httpx.AsyncClient, value: str) -> None:
    submitted = await client.post("/jobs", json={**SLEEP, "scheduled_at": value})
    assert locs(submitted) == [["body", "sleep", "scheduled_at"]]
    for field in ("created_after", "created_before"):
        assert locs(await client.get("/jobs", params={field: value})) == [["query", field]]
        export = {"type": "jobs_export", "payload": {field: value}}
        assert locs(await client.post("/jobs", json=export)) == [["body", "jobs_export", "payload", field]]
    assert locs(await client.get("/jobs", params={"cursor": cursor(value)})) == [["query", "cursor"]]
    assert locs(await client.get("/jobs", params={"cursor": cursor("2026-01-01T00:00:00")})) == [
        ["query", "cursor"]
    ]


@pytest.mark.parametrize("value", NOT_RFC3339)
async def test_only_rfc3339_date_times_are_accepted(client: httpx.AsyncClient, value: str) -> None:
    for field in ("created_after", "created_before"):
        assert locs(await client.get("/jobs", params={field: value})) == [["query", field]]
        export = {"type": "jobs_export", "payload": {field: value}}
        assert locs(await client.post("/jobs", json=export)) == [["body", "jobs_export", "payload", field]]
    assert locs(await client.post("/jobs", json={**SLEEP, "scheduled_at": value})) == [
        ["body", "sleep", "scheduled_at"]
    ]


async def test_numbers_are_not_date_times(client: httpx.AsyncClient) -> None:
    assert locs(await client.post("/jobs", json={**SLEEP, "scheduled_at": 0.5})) == [
        ["body", "sleep", "scheduled_at"]
    ]
    export = {"type": "jobs_export", "payload": {"created_before": 1_700_000_000}}
    assert locs(await client.post("/jobs", json=export)) == [
        ["body", "jobs_export", "payload", "created_before"]
    ]
    listed = await client.get("/jobs", params={"created_after": "2026-01-31T09:30:00+02:00"})
    assert listed.status_code == 200, listed.text


LONE_SURROGATES = [
    '{"type": "sleep", "payload": {"seconds": 0}, "name": "\\ud800"}',
    '{"type": "sleep", "payload": {"seconds": 0, "\\udfff": 1}}',
    '{"type": "sleep", "payload": {"seconds": 0}, "\\ud800x": 1}',
    '{"type": "\\ud800", "payload": {"seconds": 0}}',
    '{"type": "jobs_export", "payload": {"status": ["\\ud800"]}}',
]


def nested(depth: int) -> str:
    return '{"type": "sleep", "payload": {"seconds": 0}, "name": ' + "[" * depth + "]" * depth + "}"


async def post_raw(client: httpx.AsyncClient, body: str, key: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return await client.post("/jobs", content=body.encode(), headers=headers)


@pytest.mark.parametrize("key", [None, "surrogate"])
@pytest.mark.parametrize("body", LONE_SURROGATES)
async def test_a_lone_surrogate_anywhere_is_422(
    stack: Stack, client: httpx.AsyncClient, body: str, key: str
) -> None:
    key = key and f"{key}-{uuid.uuid4()}"
    response = await post_raw(client, body, key)
    assert response.status_code == 422, response.text
    assert (await client.get("/jobs")).json()["items"] == []
    assert await db.fetch(stack.settings, "SELECT 1 FROM idempotency_keys WHERE key = $1", key) == []


@pytest.mark.parametrize("key", [None, "deep"])
@pytest.mark.parametrize("depth", [900, 1_000, 100_000])
async def test_a_deeply_nested_body_is_422(client: httpx.AsyncClient, depth: int, key: str | None) -> None:
    response = await post_raw(client, nested(depth), key and f"{key}-{uuid.uuid4()}")
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("body", [b"\xff", b'{"type": "sleep", "name": "\xe9"}', b"\x00"])
async def test_a_body_that_is_not_utf8_json_is_422(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_deep_and_surrogate_bodies_through_uvicorn(stack: Stack, tmp_path: Path) -> None:
    api_key = await stack.new_key()
    async with (
        serve_api(stack.settings, tmp_path / "api.log") as base,
        httpx.AsyncClient(base_url=base, headers={"X-API-Key": api_key}) as client,
    ):
        for body in [*(nested(d) for d in (500, 900, 950, 990, 1_000, 5_000)), *LONE_SURROGATES]:
            response = await post_raw(client, body, f"k-{uuid.uuid4()}")
            assert response.status_code == 422, (body[:80], response.text)


async def test_equal_bodies_still_replay(client: httpx.AsyncClient) -> None:
    key = f"defaults-{uuid.uuid4()}"
    first = await post_raw(client, '{"type": "sleep", "payload": {"seconds": 1}}', key)
    spelled_out = '{"payload": {"fail_first": 0, "seconds": 1.0}, "type": "sleep", "name": null}'
    again = await post_raw(client, spelled_out, key)  # the same submission once validated
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await post_raw(client, '{"type": "sleep", "payload": {"seconds": 2}}', key)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
