"""The `jobplatform` command line against a real API process."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

from backend.services.auth import create_key
from tests.utils import db
from tests.utils.stack import ROOT, Stack, serve_api, settings_env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_keys_and_submit_wait_download(stack: Stack, tmp_path: Path) -> None:
    env = settings_env(stack.settings)
    created = await asyncio.to_thread(_run, ["keys", "create", "cli-test"], env)
    assert created.returncode == 0, created.stderr
    key, id_line = created.stdout.splitlines()
    key_id = id_line.removeprefix("id ")
    assert key.startswith("jp_") and uuid.UUID(key_id)
    listed = await asyncio.to_thread(_run, ["keys", "list"], env)
    assert f"{key_id}  cli-test" in listed.stdout and key[:6] not in listed.stdout

    target = tmp_path / "report.csv"
    async with serve_api(stack.settings, tmp_path / "api.log") as base:
        args = ["submit", "csv_report", "--payload", '{"rows": 1000, "seed": 3}', "--download", str(target)]
        done = await asyncio.to_thread(_run, [*args, "--url", base, "--api-key", key], env)
    assert done.returncode == 0, done.stderr
    assert "100.0% completed" in done.stderr
    lines = target.read_text().splitlines()
    assert len(lines) == 1001 and lines[0].startswith("order_id,")
    job_id = done.stdout.splitlines()[0]
    async with await stack.client(key) as client:
        job = (await client.get(f"/jobs/{job_id}")).json()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == job["result_file"]["sha256"]

    revoked = await asyncio.to_thread(_run, ["keys", "revoke", key_id], env)
    assert revoked.returncode == 0 and f"revoked key {key_id} (cli-test)" in revoked.stdout


async def test_keys_are_listed_and_revoked_by_id_never_by_their_secret(stack: Stack) -> None:
    env = settings_env(stack.settings)
    async with db.pool(stack.settings) as pool:
        # Two secrets alike in their first 10 characters, and one short enough to be its own prefix.
        raw_a, twin_a = await create_key(pool, "twin-a", f"jp_twins_{uuid.uuid4().hex}")
        raw_b, twin_b = await create_key(pool, "twin-b", f"jp_twins_{uuid.uuid4().hex}")
        raw_short, short = await create_key(pool, "short", f"jp_{uuid.uuid4().hex[:6]}")

    listed = await asyncio.to_thread(_run, ["keys", "list"], env)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()}
    assert lines[str(twin_a)][:2] == ["twin-a", "active"] and lines[str(short)][:2] == ["short", "active"]
    assert not any(raw[:6] in listed.stdout for raw in (raw_a, raw_b, raw_short))

    revoked = await asyncio.to_thread(_run, ["keys", "revoke", str(twin_a)], env)
    assert revoked.returncode == 0, revoked.stderr
    states = {r["id"]: r["revoked_at"] for r in await db.fetch(stack.settings, "SELECT * FROM api_keys")}
    assert states[twin_a] is not None and states[twin_b] is None and states[short] is None

    unknown = uuid.uuid4()
    missing = await asyncio.to_thread(_run, ["keys", "revoke", str(unknown)], env)
    assert missing.returncode == 1 and f"no API key with id {unknown}" in missing.stderr
    not_an_id = await asyncio.to_thread(_run, ["keys", "revoke", "jp_twins_"], env)
    assert not_an_id.returncode == 2 and "not a key id" in not_an_id.stderr
    after = {r["id"]: r["revoked_at"] for r in await db.fetch(stack.settings, "SELECT * FROM api_keys")}
    assert after == states


async def test_keys_create_with_a_role_and_limits(stack: Stack) -> None:
    env = settings_env(stack.settings)
    args = ["keys", "create", "ops", "--role", "admin", "--max-running", "3", "--rate-limit", "50/minute"]
    created = await asyncio.to_thread(_run, args, env)
    assert created.returncode == 0, created.stderr
    key, id_line = created.stdout.splitlines()
    key_id = uuid.UUID(id_line.removeprefix("id "))
    rows = await db.fetch(
        stack.settings, "SELECT role, max_running, rate_limit FROM api_keys WHERE id = $1", key_id
    )
    assert tuple(rows[0]) == ("admin", 3, "50/minute")
    async with await stack.client(key) as admin:
        assert (await admin.get("/admin/keys")).status_code == 200

    listed = await asyncio.to_thread(_run, ["keys", "list"], env)
    line = next(line for line in listed.stdout.splitlines() if line.startswith(str(key_id)))
    assert line.split()[1:4] == ["ops", "active", "admin"]
    assert "max_running 3" in line and "rate_limit 50/minute" in line

    plain = await asyncio.to_thread(_run, ["keys", "create", "tenant"], env)
    plain_id = plain.stdout.splitlines()[1].removeprefix("id ")
    listed = await asyncio.to_thread(_run, ["keys", "list"], env)
    assert next(ln for ln in listed.stdout.splitlines() if ln.startswith(plain_id)).split()[3] == "client"

    for bad in (["--role", "root"], ["--max-running", "0"], ["--rate-limit", "10/day"]):
        refused = await asyncio.to_thread(_run, ["keys", "create", "bad", *bad], env)
        assert refused.returncode == 2 and bad[0] in refused.stderr, refused.stderr


async def test_schedules_create_list_delete(stack: Stack) -> None:
    env = settings_env(stack.settings)
    async with db.pool(stack.settings) as pool:
        raw, owner = await create_key(pool, "sched-owner", f"jp_sched_{uuid.uuid4().hex}")
    args = [
        "schedules",
        "create",
        "--name",
        "hourly-sum",
        "--cron",
        "0 * * * *",
        "--timezone",
        "Europe/Paris",
    ]
    args += ["--type", "square_sum", "--payload", '{"data": [1, 2]}', "--overlap", "skip", "--api-key", raw]
    created = await asyncio.to_thread(_run, args, env)
    assert created.returncode == 0, created.stderr
    schedule_id, next_line = created.stdout.splitlines()
    assert uuid.UUID(schedule_id) and next_line.startswith("next run ")
    async with await stack.client(raw) as client:
        view = (await client.get(f"/schedules/{schedule_id}")).json()
    assert view["cron"] == "0 * * * *" and view["overlap"] == "skip" and view["job"]["type"] == "square_sum"

    listed = await asyncio.to_thread(_run, ["schedules", "list", "--owner", str(owner)], env)
    assert listed.returncode == 0 and listed.stdout.startswith(f"{schedule_id}  hourly-sum"), listed.stdout

    for bad, field in [
        (["--cron", "0 25 * * *"], "cron"),
        (["--every-seconds", "5", "--timezone", "Nowhere"], "timezone"),
        (["--every-seconds", "5", "--payload", '{"data": "x"}'], "job.square_sum.payload.data"),
    ]:
        refused = await asyncio.to_thread(
            _run, ["schedules", "create", "--owner", str(owner), "--type", "square_sum", *bad], env
        )
        assert refused.returncode == 2 and field in refused.stderr, refused.stderr
    no_owner = {**env, "BOOTSTRAP_API_KEY": "", "JOBPLATFORM_API_KEY": ""}
    orphan = await asyncio.to_thread(
        _run, ["schedules", "create", "--every-seconds", "5", "--type", "sleep"], no_owner
    )
    assert orphan.returncode == 2 and "no owner" in orphan.stderr

    deleted = await asyncio.to_thread(_run, ["schedules", "delete", schedule_id], env)
    assert deleted.returncode == 0 and f"deleted schedule {schedule_id}" in deleted.stdout
    again = await asyncio.to_thread(_run, ["schedules", "delete", schedule_id], env)
    assert again.returncode == 1 and "no schedule with id" in again.stderr
