"""Idempotency-Key on POST /jobs: replay, mismatch, scope, validation, expiry, concurrency, cost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from backend.core.config import Settings
from backend.repo.idempotency import IdempotencyRepository
from tests.utils import db
from tests.utils.stack import Stack, serve_api, start_valkey, wait_for

IDEM = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def job_body(*data: int) -> dict[str, Any]:
    return {"type": "square_sum", "payload": {"data": list(data) or [1]}}


async def post(client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {IDEM: key} if key is not None else {}
    return await client.post("/jobs", json=body, headers=headers)


async def job_ids(client: httpx.AsyncClient) -> list[str]:
    """Every job the client's API key owns."""
    response = await client.get("/jobs", params={"limit": 100})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return [item["id"] for item in page["items"]]


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[IdempotencyRepository]:
    """Direct access to the stack's key records (to check what the API stored)."""
    async with db.pool(settings) as pool:
        yield IdempotencyRepository(pool)


async def records(settings: Settings, key: str) -> list[SimpleNamespace]:
    rows = await db.fetch(settings, "SELECT * FROM idempotency_keys WHERE key = $1", key)
    return [SimpleNamespace(**dict(row.items())) for row in rows]


def assert_replay_of(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code == 201, again.text
    assert again.content == first.content  # byte for byte, key order included
    assert again.headers["location"] == first.headers["location"] == f"/jobs/{first.json()['id']}"
    assert again.headers.get(REPLAYED) == "true"
    assert REPLAYED.lower() not in first.headers


# --- replay and fingerprint ------------------------------------------------------------------------------


async def test_same_key_same_body_replays_the_first_response(client: httpx.AsyncClient) -> None:
    key = str(uuid.uuid4())
    first = await post(client, job_body(3, 4), key)
    again = await post(client, job_body(3, 4), key)
    assert_replay_of(first, again)
    # The stored response is replayed, not the job's current state.
    await wait_for(client, first.json()["id"], {"completed"})
    later = await post(client, job_body(3, 4), key)
    assert_replay_of(first, later)
    assert later.json()["status"] == "pending"
    assert await job_ids(client) == [first.json()["id"]]


async def test_reordered_keys_and_whitespace_are_the_same_request(client: httpx.AsyncClient) -> None:
    key = "reorder-" + uuid.uuid4().hex
    first = await post(client, {"type": "square_sum", "payload": {"data": [1, 2, 3]}, "name": "n"}, key)
    raw = b'{ "name" : "n",\n  "payload": {"data":[1,  2,3]} ,\t"type":"square_sum"  }'
    again = await client.post("/jobs", content=raw, headers={IDEM: key, "Content-Type": "application/json"})
    assert_replay_of(first, again)
    assert len(await job_ids(client)) == 1


async def test_same_key_other_body_is_422_and_the_original_stays(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    key = "mismatch-" + uuid.uuid4().hex
    first = await post(client, job_body(1), key)
    [before] = await records(stack.settings, key)

    clash = await post(client, job_body(2), key)
    assert clash.status_code == 422
    problem = clash.json()
    assert problem["error"] == "idempotency_key_reused"
    assert "Idempotency-Key" in problem["detail"] and "different request" in problem["detail"]
    assert REPLAYED.lower() not in clash.headers and "location" not in clash.headers

    [after] = await records(stack.settings, key)
    assert (after.fingerprint, after.job_id, after.created_at, after.response_body) == (
        before.fingerprint,
        before.job_id,
        before.created_at,
        before.response_body,
    )
    assert_replay_of(first, await post(client, job_body(1), key))
    assert await job_ids(client) == [first.json()["id"]]


# --- scope and key syntax --------------------------------------------------------------------------------


async def test_same_key_under_two_api_keys_makes_two_jobs(stack: Stack, client: httpx.AsyncClient) -> None:
    key = "shared-" + uuid.uuid4().hex
    mine = await post(client, job_body(5), key)
    async with await stack.client() as other_client:
        theirs = await post(other_client, job_body(5), key)
        assert await job_ids(other_client) == [theirs.json()["id"]]
    assert mine.status_code == theirs.status_code == 201
    assert REPLAYED.lower() not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert await job_ids(client) == [mine.json()["id"]]


async def test_quoted_and_bare_key_are_the_same_key(client: httpx.AsyncClient) -> None:
    key = "quoted-" + uuid.uuid4().hex
    first = await post(client, job_body(6), f'"{key}"')
    assert_replay_of(first, await post(client, job_body(6), key))
    assert_replay_of(first, await post(client, job_body(6), f'"{key}"'))


async def test_malformed_keys_are_400_and_create_nothing(client: httpx.AsyncClient) -> None:
    bad: list[str | bytes] = ["k" * 256, f'"{"k" * 256}"', "", '""', "clé".encode(), "日本".encode(), '"open']
    for value in bad:
        response = await client.post("/jobs", json=job_body(7), headers={IDEM: value})
        assert response.status_code == 400, (value, response.text)
        assert "Idempotency-Key" in response.json()["detail"]
    two_lines = await client.post("/jobs", json=job_body(7), headers=[(IDEM, "one"), (IDEM, "two")])
    assert two_lines.status_code == 400 and "once" in two_lines.json()["detail"]
    assert (await post(client, job_body(7), "k" * 255)).status_code == 201
    assert len(await job_ids(client)) == 1


async def test_no_key_means_no_deduplication(client: httpx.AsyncClient) -> None:
    first, second = await post(client, job_body(8)), await post(client, job_body(8))
    assert first.status_code == second.status_code == 201
    assert REPLAYED.lower() not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert len(await job_ids(client)) == 2


# --- responses that are not stored -----------------------------------------------------------------------


async def test_validation_error_is_not_stored(stack: Stack, client: httpx.AsyncClient) -> None:
    key = "fix-then-retry-" + uuid.uuid4().hex
    invalid = await post(client, {"type": "square_sum", "payload": {"data": "not a list"}}, key)
    assert invalid.status_code == 422
    assert "error" not in invalid.json()  # a validation 422, not an idempotency conflict
    assert await records(stack.settings, key) == []

    fixed = await post(client, job_body(9), key)
    assert fixed.status_code == 201 and REPLAYED.lower() not in fixed.headers
    assert await job_ids(client) == [fixed.json()["id"]]


async def test_oversized_body_is_not_stored(stack: Stack, client: httpx.AsyncClient) -> None:
    key = "too-big-" + uuid.uuid4().hex
    huge = {"type": "square_sum", "payload": {"data": [1] * (stack.settings.max_body_bytes // 2)}}
    assert (await post(client, huge, key)).status_code == 413
    fresh = await post(client, job_body(10), key)
    assert fresh.status_code == 201 and REPLAYED.lower() not in fresh.headers


async def test_enqueue_failure_still_answers_201_and_keeps_the_job(isolated: Any, tmp_path: Path) -> None:
    valkey = start_valkey(tmp_path / "valkey")
    try:
        async with (
            isolated(workers=0, redis=valkey.url) as s,
            await s.client() as client,
        ):
            valkey.stop()  # Redis goes away after start-up: the enqueue after commit fails
            key = "redis-down-" + uuid.uuid4().hex
            first = await post(client, job_body(11), key)
            assert first.status_code == 201, first.text
            assert_replay_of(first, await post(client, job_body(11), key))
            job = (await client.get(first.headers["location"])).json()
            assert job["status"] == "pending"
    finally:
        valkey.stop()


# --- settings: TTL and required keys ---------------------------------------------------------------------


async def test_expired_record_counts_as_absent_and_is_purged(isolated: Any) -> None:
    async with isolated(workers=0, idempotency_ttl_hours=1 / 3600) as s, await s.client() as client:
        ttl = s.settings.idempotency_ttl_hours * 3600
        first = await post(client, job_body(1), "expiring")
        assert_replay_of(first, await post(client, job_body(1), "expiring"))
        assert (await post(client, job_body(1), "purge-me")).status_code == 201
        await asyncio.sleep(ttl + 0.5)
        async with database(s.settings) as repo:
            assert await repo.count_expired(ttl) == 2

        # Past the TTL even another body is a fresh request: the old record is taken over atomically.
        taken = await post(client, job_body(2), "expiring")
        assert taken.status_code == 201 and REPLAYED.lower() not in taken.headers
        assert taken.json()["id"] != first.json()["id"]
        assert_replay_of(taken, await post(client, job_body(2), "expiring"))
        [record] = await records(s.settings, "expiring")
        assert str(record.job_id) == taken.json()["id"]

        async with database(s.settings) as repo:
            assert await repo.delete_expired(ttl, limit=10) == 1
        assert await records(s.settings, "purge-me") == []
        assert len(await job_ids(client)) == 3  # expiry forgets the key, never the jobs


async def test_required_key_missing_is_400(isolated: Any) -> None:
    async with isolated(workers=0, idempotency_required=True) as s, await s.client() as client:
        missing = await post(client, job_body(1))
        assert missing.status_code == 400
        assert missing.json() == {"detail": "Idempotency-Key header is required"}
        assert (await post(client, job_body(1), "present")).status_code == 201
        assert len(await job_ids(client)) == 1


# --- OpenAPI ---------------------------------------------------------------------------------------------


async def test_openapi_documents_the_headers_and_responses(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/jobs"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == IDEM)
    assert header["in"] == "header" and not header.get("required", False)
    assert header["description"]
    assert REPLAYED in operation["responses"]["201"]["headers"]
    assert "Location" in operation["responses"]["201"]["headers"]
    assert {"400", "409", "422"} <= set(operation["responses"])


# --- concurrency -----------------------------------------------------------------------------------------


def assert_one_winner(responses: list[httpx.Response]) -> str:
    """No 5xx; every success is the same job; a 409 (still in flight) must say when to retry."""
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    for r in responses:
        if r.status_code == 409:
            assert "retry-after" in r.headers, r.text
    created = [r for r in responses if r.status_code == 201]
    ids = {r.json()["id"] for r in created}
    assert len(ids) == 1, ids
    assert sum(REPLAYED.lower() not in r.headers for r in created) == 1
    print(f"\n50 concurrent, one key: {dict(statuses)}, {len(created) - 1} replays")
    return ids.pop()


async def test_fifty_concurrent_requests_make_one_job(stack: Stack, client: httpx.AsyncClient) -> None:
    key = "race-" + uuid.uuid4().hex
    responses = await asyncio.gather(*(post(client, job_body(12), key) for _ in range(50)))
    job_id = assert_one_winner(responses)
    assert await job_ids(client) == [job_id]
    assert len(await records(stack.settings, key)) == 1


async def test_fifty_concurrent_connections_to_uvicorn_make_one_job(stack: Stack, tmp_path: Path) -> None:
    api_key, key = await stack.new_key(), "uvicorn-race-" + uuid.uuid4().hex
    async with (
        serve_api(stack.settings, tmp_path / "api.log") as base,
        httpx.AsyncClient(base_url=base, headers={"X-API-Key": api_key}, timeout=60) as client,
    ):
        responses = await asyncio.gather(*(post(client, job_body(13), key) for _ in range(50)))
        job_id = assert_one_winner(responses)
        assert await job_ids(client) == [job_id]
