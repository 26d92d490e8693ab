"""The HTTP contract of /jobs: auth, ownership, validation, listing, status views."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import httpx
import pytest

from tests.utils.stack import Stack, submit, wait_for


async def test_submit_returns_201_with_location_and_job(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs", json={"type": "square_sum", "payload": {"data": [2]}, "name": "two"}
    )
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "pending" and job["attempts"] == 0 and job["max_attempts"] == 3
    assert job["name"] == "two" and job["payload"] == {"data": [2]} and job["progress"] == 0
    assert uuid.UUID(job["id"]).version == 7
    for field in ("created_at", "scheduled_at", "updated_at"):
        assert job[field] is not None


async def test_missing_or_wrong_key_is_401_with_challenge(stack: Stack) -> None:
    async with await stack.client("jp_not-a-real-key") as wrong:
        r = await wrong.get("/jobs")
        assert r.status_code == 401 and "www-authenticate" in r.headers
    assert stack.app_client is not None
    r = await stack.app_client.post("/jobs", json={"type": "sleep", "payload": {"seconds": 0}})
    assert r.status_code == 401
    assert r.json() == {"detail": "Missing or invalid API key"}


async def test_openapi_documents_401_and_429_on_every_authenticated_operation(stack: Stack) -> None:
    assert stack.app_client is not None
    paths = (await stack.app_client.get("/openapi.json")).json()["paths"]
    operations = [(f"{m.upper()} {p}", op) for p, ops in paths.items() for m, op in ops.items()]
    secured = [(name, op) for name, op in operations if op.get("security")]
    assert {name for name, _ in secured} >= {"POST /jobs", "GET /jobs", "GET /jobs/{job_id}/download"}
    for name, op in secured:
        assert {"401", "429"} <= set(op["responses"]), name
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"], name
        assert "Retry-After" in op["responses"]["429"]["headers"], name
    for name, op in operations:
        if not op.get("security"):
            assert "401" not in op["responses"], name
    idempotency = next(p for p in paths["/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert idempotency["schema"]["maxLength"] == 512
    assert re.fullmatch(idempotency["schema"]["pattern"], '"order \\"42\\""')
    assert not re.fullmatch(idempotency["schema"]["pattern"], '"unterminated')


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    for method, path, allow in [
        ("OPTIONS", "/jobs", "GET, POST"),
        ("DELETE", "/jobs", "GET, POST"),
        ("OPTIONS", f"/jobs/{uuid.uuid4()}/download", "GET, HEAD"),
        ("POST", f"/jobs/{uuid.uuid4()}", "GET"),
        ("PUT", "/health", "GET"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow, (method, path)
        assert response.json() == {"detail": "Method Not Allowed"}


async def test_public_endpoints_need_no_key(stack: Stack) -> None:
    assert stack.app_client is not None
    assert (await stack.app_client.get("/health")).json() == {"status": "ok"}
    ready = await stack.app_client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    schema = (await stack.app_client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    for path in ("", "/status", "/result", "/download"):
        r = await client.get(f"/jobs/{uuid.uuid4()}{path}")
        assert r.status_code == 404 and r.json() == {"detail": "Job not found"}, path


async def test_each_key_sees_only_its_own_jobs(stack: Stack, client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 0})
    async with await stack.client() as other:
        assert (await other.get(f"/jobs/{job['id']}")).status_code == 404
        assert (await other.post(f"/jobs/{job['id']}/cancel")).status_code == 404
        assert (await other.get("/jobs")).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "nope", "payload": {}}, ["body", "type"]),
        ({"payload": {}}, ["body", "type"]),
        ({"type": "csv_report", "payload": {"rows": 0}}, ["body", "csv_report", "payload", "rows"]),
        ({"type": "csv_report", "payload": {"rows": 10_000_001}}, ["body", "csv_report", "payload", "rows"]),
        ({"type": "square_sum", "payload": {"data": "x"}}, ["body", "square_sum", "payload", "data"]),
        ({"type": "sleep", "payload": {"seconds": -1}}, ["body", "sleep", "payload", "seconds"]),
        ({"type": "sleep", "payload": {"seconds": 1, "extra": 1}}, ["body", "sleep", "payload", "extra"]),
        ({"type": "sleep", "payload": {"seconds": 1}, "max_attempts": 21}, ["body", "sleep", "max_attempts"]),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    r = await client.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


async def test_oversized_body_is_413(client: httpx.AsyncClient, stack: Stack) -> None:
    big = {"type": "square_sum", "payload": {"data": [1] * (stack.settings.max_body_bytes // 2)}}
    r = await client.post("/jobs", json=big)
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]


async def test_status_and_result_views(client: httpx.AsyncClient) -> None:
    job = await submit(client, "cube_sum", {"data": [1, 2, 3]})
    await wait_for(client, job["id"], {"completed"})
    status = (await client.get(f"/jobs/{job['id']}/status")).json()
    assert status == {"id": job["id"], "status": "completed", "progress": 1.0}
    result = (await client.get(f"/jobs/{job['id']}/result")).json()
    assert result == {"id": job["id"], "status": "completed", "result": {"value": 36}, "result_file": None}


async def test_result_is_null_until_completed(client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 30})
    result = (await client.get(f"/jobs/{job['id']}/result")).json()
    assert result["result"] is None and result["status"] in ("pending", "running")
    assert (await client.post(f"/jobs/{job['id']}/cancel")).status_code == 202
    await wait_for(client, job["id"], {"cancelled"})


async def test_list_is_newest_first_with_cursor_pagination(client: httpx.AsyncClient) -> None:
    ids = [(await submit(client, "square_sum", {"data": [i]}))["id"] for i in range(5)]
    page1 = (await client.get("/jobs", params={"limit": 2})).json()
    assert [j["id"] for j in page1["items"]] == ids[::-1][:2]
    page2 = (await client.get("/jobs", params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    page3 = (await client.get("/jobs", params={"limit": 2, "cursor": page2["next_cursor"]})).json()
    seen = [j["id"] for p in (page1, page2, page3) for j in p["items"]]
    assert seen == ids[::-1] and page3["next_cursor"] is None


async def test_list_filters_and_limits(client: httpx.AsyncClient) -> None:
    a = await submit(client, "square_sum", {"data": [1]})
    await submit(client, "sleep", {"seconds": 0})
    only_squares = (await client.get("/jobs", params={"type": "square_sum"})).json()["items"]
    assert [j["id"] for j in only_squares] == [a["id"]]
    assert (await client.get("/jobs", params={"limit": 0})).status_code == 422
    assert (await client.get("/jobs", params={"limit": 101})).status_code == 422
    bad = await client.get("/jobs", params={"cursor": "!!!"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert (await client.get("/jobs", params={"status": "bogus"})).status_code == 422


async def test_scheduled_job_waits_until_due(client: httpx.AsyncClient) -> None:
    from datetime import UTC, datetime, timedelta

    at = datetime.now(UTC) + timedelta(seconds=1.5)
    job = await submit(client, "sleep", {"seconds": 0}, scheduled_at=at.isoformat())
    await asyncio.sleep(0.8)
    assert (await client.get(f"/jobs/{job['id']}/status")).json()["status"] == "pending"
    done = await wait_for(client, job["id"], {"completed"})
    assert datetime.fromisoformat(done["started_at"]) >= at


async def test_events_stream_until_terminal(client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 1})
    events = []
    async with client.stream("GET", f"/jobs/{job['id']}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "completed" and "running" in statuses
    assert any(0 < e["progress"] < 1 for e in events)


async def test_nul_in_name_is_422_not_500(client: httpx.AsyncClient) -> None:
    r = await client.post("/jobs", json={"type": "sleep", "payload": {"seconds": 0}, "name": "a\u0000b"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sleep", "name"]


async def test_metrics_are_public_prometheus_text(stack: Stack, client: httpx.AsyncClient) -> None:
    from datetime import UTC, datetime, timedelta

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await submit(client, "sleep", {"seconds": 0}, scheduled_at=later)
    assert stack.app_client is not None
    r = await stack.app_client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in r.text.splitlines()
        if not line.startswith("#")
    }
    assert values['jobplatform_jobs{status="pending"}'] >= 1
    assert values["jobplatform_queue_deliveries"] >= 1
    assert {'jobplatform_jobs{status="running"}', "jobplatform_oldest_due_wait_seconds"} <= set(values)
