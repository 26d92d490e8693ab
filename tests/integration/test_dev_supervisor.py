"""`jobplatform dev` (= `make run`) as a supervisor: a killed worker comes back, the rest keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import psutil

from backend.core.embedded import create_database, database_url, free_port
from backend.launcher import ChildProcess, platform_command
from backend.services.auth import generate_key
from tests.utils.stack import ROOT, TEMPLATE_DB, read_log, submit, wait_for

FAST_ENV = {
    "ENVIRONMENT": "test",
    "LEASE_SECONDS": "2",
    "HEARTBEAT_SECONDS": "0.3",
    "RECONCILE_EVERY_SECONDS": "1",
    "RECONCILE_GRACE_SECONDS": "1",
    "RETRY_BASE_SECONDS": "0.05",
    "POLL_DELAY_SECONDS": "0.01",
    "AUTH_CACHE_SECONDS": "0",
    "SHUTDOWN_GRACE_SECONDS": "2",
    "LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}


async def _dev_env(servers: tuple[str, str], tmp: Path, port: int, key: str) -> dict[str, str]:
    """The environment of a `jobplatform dev` on a fresh clone of the template and the session Valkey."""
    admin_url, redis_url = servers
    name = f"jp_{uuid.uuid4().hex[:10]}"
    await create_database(admin_url, name, template=TEMPLATE_DB)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    return {
        **env,
        **FAST_ENV,
        "DATABASE_URL": database_url(admin_url, name),
        "REDIS_URL": redis_url,
        "DATA_DIR": str(tmp / "data"),
        "RESULTS_DIR": str(tmp / "results"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BOOTSTRAP_API_KEY": key,
        "QUEUE_NAME": f"arq:{name}",
    }


def _children(pid: int, role: str) -> list[psutil.Process]:
    """The live `jobplatform <role>` children of the dev process."""
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            if role in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


async def _healthy(client: httpx.AsyncClient, dev: ChildProcess, log: Path, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert dev.alive(), read_log(log)
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/health")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"`jobplatform dev` never answered /health:\n{read_log(log)}")


async def _replacement(dev: ChildProcess, role: str, old_pid: int, log: Path, within: float = 30) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pids = [p.pid for p in _children(dev.pid, role) if p.pid != old_pid]
        if pids:
            return pids[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new {role} within {within}s:\n{read_log(log)}")


def _kill_tree(dev: ChildProcess) -> None:
    """Last-resort clean-up: the children run in their own process groups, so end them one by one."""
    if dev.alive():
        for child in psutil.Process(dev.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    dev.kill()


async def test_dev_restarts_a_killed_worker_and_stops_cleanly_on_sigterm(
    servers: tuple[str, str], template_db: str, tmp_path: Path
) -> None:
    port, key, log = free_port(), generate_key(), tmp_path / "dev.log"
    env = await _dev_env(servers, tmp_path, port, key)
    dev = ChildProcess(platform_command("dev"), env=env, cwd=ROOT, log_path=log).start()
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=10) as client:
            await _healthy(client, dev, log)
            job = await submit(client, "sleep", {"seconds": 3})
            await wait_for(client, job["id"], {"running"}, timeout=30)
            [worker] = _children(dev.pid, "worker")
            worker.send_signal(signal.SIGKILL)

            assert (await client.get("/health")).status_code == 200
            await _replacement(dev, "worker", worker.pid, log)
            done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=40)
            assert done["status"] == "completed" and done["attempts"] == 2, done
            assert (await client.get("/health")).status_code == 200

        children = psutil.Process(dev.pid).children(recursive=True)
        assert await dev.terminate_async(30) == 0, read_log(log)
        _, left = psutil.wait_procs(children, timeout=5)
        assert not left, f"children left running: {left}"
        assert "worker (pid" in read_log(log) and "restarting in" in read_log(log)
        banner = read_log(log)  # what `make run` prints: the Swagger and dashboard URLs and the key
        assert f"{base}/docs" in banner and f"{base}/ui" in banner and key in banner
    finally:
        _kill_tree(dev)
