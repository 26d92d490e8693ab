"""The `jobplatform` command line against a real API process."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

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
    key = created.stdout.strip()
    assert key.startswith("jp_")
    listed = await asyncio.to_thread(_run, ["keys", "list"], env)
    assert key[:10] in listed.stdout and key not in listed.stdout  # only the prefix is ever shown

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

    revoked = await asyncio.to_thread(_run, ["keys", "revoke", key[:10]], env)
    assert "revoked 1 key(s)" in revoked.stdout
