"""Roles and the admin API: admin keys manage keys and see every tenant; client keys get 403."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from backend.core.config import Settings
from backend.domain.enums import KeyRole
from backend.repo.api_keys import ApiKeyRepository
from backend.services.auth import create_key, ensure_key
from tests.utils import db
from tests.utils.stack import Stack, serve_api, submit, wait_for

KEY_FIELDS = {"id", "name", "role", "max_running", "rate_limit", "created_at", "revoked_at"}


async def test_client_keys_get_403_on_admin_routes(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("POST", f"/admin/keys/{uuid.uuid4()}/revoke"),
    ):
        response = await client.request(method, path, json={"name": "x"})
        assert response.status_code == 403, (path, response.text)
        assert response.json() == {"detail": "Admin API key required"}


async def test_admin_routes_document_401_403(stack: Stack) -> None:
    assert stack.app_client is not None
    spec = (await stack.app_client.get("/openapi.json")).json()
    for path, ops in spec["paths"].items():
        if path.startswith("/admin/"):
            for op in ops.values():
                assert {"401", "403", "429"} <= set(op["responses"]), path


async def test_admin_creates_lists_and_revokes_keys(stack: Stack) -> None:
    async with await stack.admin_client() as admin:
        body = {"name": "tenant-a", "max_running": 2, "rate_limit": "100/minute"}
        created = await admin.post("/admin/keys", json=body)
        assert created.status_code == 201, created.text
        key = created.json()
        assert set(key) == KEY_FIELDS | {"secret"} and key["secret"].startswith("jp_")
        assert key["role"] == "client" and key["max_running"] == 2 and key["rate_limit"] == "100/minute"

        async with await stack.client(key["secret"]) as tenant:
            assert (await tenant.get("/jobs")).status_code == 200

        listed = (await admin.get("/admin/keys")).json()
        mine = [k for k in listed if k["id"] == key["id"]]
        assert mine and set(mine[0]) == KEY_FIELDS and mine[0]["revoked_at"] is None
        assert not any(key["secret"][:8] in str(k) for k in listed)

        revoked = await admin.post(f"/admin/keys/{key['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        async with await stack.client(key["secret"]) as tenant:
            assert (await tenant.get("/jobs")).status_code == 401

        missing = await admin.post(f"/admin/keys/{uuid.uuid4()}/revoke")
        assert missing.status_code == 404 and missing.json() == {"detail": "API key not found"}

        new_admin = (await admin.post("/admin/keys", json={"name": "ops", "role": "admin"})).json()
        async with await stack.client(new_admin["secret"]) as ops:
            assert (await ops.get("/admin/keys")).status_code == 200


async def test_bad_key_requests_are_422_naming_the_field(stack: Stack) -> None:
    async with await stack.admin_client() as admin:
        cases = {
            "role": {"name": "x", "role": "root"},
            "max_running": {"name": "x", "max_running": 0},
            "rate_limit": {"name": "x", "rate_limit": "10/day"},
            "name": {"name": ""},
        }
        for field, body in cases.items():
            response = await admin.post("/admin/keys", json=body)
            assert response.status_code == 422, (field, response.text)
            assert response.json()["detail"][0]["loc"] == ["body", field], response.text
        assert (await admin.post("/admin/keys", json={"name": "x", "secret": "mine"})).status_code == 422


async def test_bootstrap_key_is_admin_even_if_stored_before_roles(stack: Stack) -> None:
    async with db.pool(stack.settings) as pool:
        raw_new = f"jp_boot_{uuid.uuid4().hex}"
        new_id = await ensure_key(pool, raw_new)
        raw_old, old_id = await create_key(pool, "bootstrap", f"jp_boot_{uuid.uuid4().hex}")
        assert await ensure_key(pool, raw_old) == old_id
        roles = {k.id: k.role for k in await ApiKeyRepository(pool).all()}
    assert roles[new_id] is KeyRole.ADMIN and roles[old_id] is KeyRole.ADMIN
    async with await stack.client(raw_old) as admin:
        assert (await admin.get("/admin/keys")).status_code == 200


async def test_revoked_key_is_refused_within_1s_by_another_api_process(stack: Stack, tmp_path: Path) -> None:
    default_cache = Settings.model_fields["auth_cache_seconds"].default
    assert default_cache <= 1
    settings = stack.settings.model_copy(update={"auth_cache_seconds": default_cache})
    async with db.pool(stack.settings) as pool:
        key, key_id = await create_key(pool, "soon-revoked")
    async with (
        serve_api(settings, tmp_path / "api.log") as base,
        httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as other,
        await stack.admin_client() as admin,
    ):
        assert (await other.get("/jobs")).status_code == 200  # now cached by the other process
        revoking = time.monotonic()
        assert (await admin.post(f"/admin/keys/{key_id}/revoke")).status_code == 200
        while (status := (await other.get("/jobs")).status_code) == 200:
            # 0.1 s of slack for the request that carried the last 200 back
            assert time.monotonic() - revoking < 1.1, "revoked key still accepted after 1 s"
            await asyncio.sleep(0.05)
        assert status == 401


async def test_a_keys_own_rate_limit_replaces_the_platforms(stack: Stack) -> None:
    # The shared stack has no RATE_LIMIT: only the limited key is counted.
    assert stack.settings.rate_limit is None
    async with (
        await stack.client(await stack.new_key("limited", rate_limit="3/hour")) as limited,
        await stack.client() as unlimited,
    ):
        assert [(await limited.get("/jobs")).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert {(await unlimited.get("/jobs")).status_code for _ in range(5)} == {200}


async def test_admins_read_and_steer_every_tenants_jobs(stack: Stack) -> None:
    later = "2999-01-01T00:00:00Z"
    async with await stack.admin_client() as admin:
        tenant = (await admin.post("/admin/keys", json={"name": "tenant"})).json()
        async with await stack.client(tenant["secret"]) as owner, await stack.client() as stranger:
            job = await submit(owner, "sleep", {"seconds": 0}, scheduled_at=later)
            other = await submit(stranger, "sleep", {"seconds": 0}, scheduled_at=later)
            assert job["owner_id"] is None  # client keys are not shown owners
            assert (await owner.get(f"/jobs/{job['id']}")).json()["owner_id"] is None
            for query in ("all", tenant["id"]):
                refused = await owner.get("/jobs", params={"owner": query})
                assert refused.status_code == 403 and refused.json() == {"detail": "Admin API key required"}
            assert (await stranger.get(f"/jobs/{job['id']}")).status_code == 404

            everyone = (await admin.get("/jobs", params={"owner": "all", "limit": 100})).json()["items"]
            owners = {j["id"]: j["owner_id"] for j in everyone}
            assert owners[job["id"]] == tenant["id"] and owners[other["id"]] is not None
            theirs = (await admin.get("/jobs", params={"owner": tenant["id"]})).json()["items"]
            assert [j["id"] for j in theirs] == [job["id"]]
            assert (await admin.get("/jobs")).json()["items"] == []  # without `owner`: the admin's own
            bad = await admin.get("/jobs", params={"owner": "everyone"})
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "owner"]

            seen = await admin.get(f"/jobs/{job['id']}")
            assert seen.status_code == 200 and seen.json()["owner_id"] == tenant["id"]
            cancelled = await admin.post(f"/jobs/{job['id']}/cancel")
            assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
            assert (await owner.get(f"/jobs/{job['id']}")).json()["status"] == "cancelled"
            retried = await admin.post(f"/jobs/{job['id']}/retry")
            assert retried.status_code == 202 and retried.json()["owner_id"] == tenant["id"]


async def test_include_runs_lists_every_claim(client: httpx.AsyncClient) -> None:
    job = await submit(client, "square_sum", {"data": [3]})
    await wait_for(client, job["id"], {"completed"})
    plain = (await client.get(f"/jobs/{job['id']}")).json()
    assert "runs" not in plain and plain["status"] == "completed"
    detailed = await client.get(f"/jobs/{job['id']}", params={"include": "runs"})
    assert detailed.status_code == 200
    body = detailed.json()
    assert {k: v for k, v in body.items() if k != "runs"} == plain
    [run] = body["runs"]
    assert set(run) == {"attempt", "worker_id", "started_at", "ended_at", "outcome"}
    assert run["attempt"] == 1 and run["outcome"] == "completed" and run["worker_id"]
    assert run["ended_at"] >= run["started_at"]
    bad = await client.get(f"/jobs/{job['id']}", params={"include": "everything"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "include", 0]


async def _peak_running(stack: Stack, jobs: list[dict[str, object]]) -> int:
    """The most of these jobs' runs that overlapped in time (from job_runs)."""
    ids = [uuid.UUID(str(j["id"])) for j in jobs]
    runs = await db.fetch(
        stack.settings, "SELECT started_at, ended_at FROM job_runs WHERE job_id = ANY($1::uuid[])", ids
    )
    assert len(runs) == len(jobs)
    edges = sorted([(r["ended_at"], -1) for r in runs] + [(r["started_at"], 1) for r in runs])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def _run_all(client: httpx.AsyncClient, count: int, seconds: float) -> list[dict[str, object]]:
    jobs = [await submit(client, "sleep", {"seconds": seconds}) for _ in range(count)]
    for job in jobs:
        done = await wait_for(client, str(job["id"]), {"completed"}, timeout=30)
        assert done["attempts"] == 1, done  # held back by the cap without spending an attempt
    return jobs


async def test_a_keys_max_running_caps_its_jobs_at_claim(stack: Stack) -> None:
    assert stack.settings.max_running_jobs_per_key == 0 and len(stack.workers) >= 2
    async with await stack.client(await stack.new_key("capped", max_running=1)) as capped:
        assert await _peak_running(stack, await _run_all(capped, 3, 0.4)) == 1


async def test_a_keys_max_running_replaces_the_platform_cap(isolated: Any) -> None:
    async with isolated(workers=2, max_running_jobs_per_key=1) as stack:
        async with (
            await stack.client(await stack.new_key("roomy", max_running=2)) as roomy,
            await stack.client() as default,
        ):
            roomy_jobs, default_jobs = await asyncio.gather(
                _run_all(roomy, 4, 0.8), _run_all(default, 2, 0.3)
            )
        assert await _peak_running(stack, roomy_jobs) == 2
        assert await _peak_running(stack, default_jobs) == 1
