"""Test infrastructure: embedded servers, migrated databases, worker processes, API clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from backend.core.config import Settings
from backend.core.embedded import EmbeddedValkey, create_database, database_url, free_port
from backend.domain.enums import KeyRole
from backend.launcher import ChildProcess, platform_command
from backend.main import create_app
from backend.services.auth import add_key
from tests.utils import db

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DB = "jp_template"

FAST = {
    "environment": "test",
    "lease_seconds": 2.0,
    "heartbeat_seconds": 0.3,
    "reconcile_every_seconds": 1,
    "reconcile_grace_seconds": 1.0,
    "retry_base_seconds": 0.05,
    "retry_cap_seconds": 0.5,
    "poll_delay_seconds": 0.01,
    "shutdown_grace_seconds": 2,
    "auth_cache_seconds": 0,
    "log_level": "INFO",
    # Webhook tests POST to receivers on 127.0.0.1 (one test turns this off to see them refused).
    "webhook_allow_private": True,
    "webhook_backoff_seconds": [0.2],
    "webhook_poll_seconds": 0.1,
    "webhook_lease_seconds": 6,
}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess read exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    for name, value in settings.model_dump(mode="json").items():
        if isinstance(secret := getattr(settings, name), SecretStr):
            value = secret.get_secret_value()  # dumped as "**********" otherwise
        if value is not None:
            env[name.upper()] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess(ChildProcess):
    """A real `jobplatform worker` process."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(platform_command("worker"), env=settings_env(settings), cwd=ROOT, log_path=log_path)
        self.settings = settings

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The OS process, for signals the launcher has no method for (SIGSTOP, SIGCONT)."""
        return self.popen


@dataclass
class Stack:
    """One isolated platform: a database cloned from the migrated template, a queue, workers, an app."""

    settings: Settings
    tmp: Path
    app_client: httpx.AsyncClient | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    app: FastAPI | None = None  # the in-process app (its `state.platform` holds the API's services)

    def spawn_worker(self, **overrides: Any) -> WorkerProcess:
        """Start another worker process on this stack."""
        settings = self.settings.model_copy(update=overrides)
        worker = WorkerProcess(settings, self.tmp / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    async def new_key(self, name: str = "test", role: KeyRole = KeyRole.CLIENT, **limits: Any) -> str:
        """A fresh API key (each test sees only its own jobs); `limits`: max_running, rate_limit."""
        async with db.pool(self.settings) as pool:
            raw, _ = await add_key(pool, name, None, role, **limits)
        return raw

    async def admin_client(self) -> httpx.AsyncClient:
        """An HTTP client for this stack's app with a fresh admin key."""
        return await self.client(await self.new_key("admin", KeyRole.ADMIN))

    async def client(self, key: str | None = None) -> httpx.AsyncClient:
        """An HTTP client for this stack's app, authenticated with `key` (a new one if omitted)."""
        assert self.app_client is not None
        key = key or await self.new_key()
        transport = self.app_client._transport
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers={"X-API-Key": key})

    def stop_workers(self) -> None:
        """Terminate every worker process."""
        for worker in self.workers:
            worker.kill()


@contextlib.asynccontextmanager
async def open_stack(
    admin_url: str, redis_url: str, tmp: Path, workers: int = 1, **overrides: Any
) -> AsyncIterator[Stack]:
    """A fresh database and queue with `workers` worker processes and an in-process app."""
    name = f"jp_{uuid.uuid4().hex[:10]}"
    await create_database(admin_url, name, template=TEMPLATE_DB)
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    settings = Settings(
        **{**FAST, **overrides},
        database_url=database_url(admin_url, name),
        redis_url=redis_url,
        results_dir=tmp / "results",
        queue_name=f"arq:{name}",
        data_dir=tmp,
    )
    stack = Stack(settings, tmp)
    app = stack.app = create_app(settings)
    try:
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                stack.app_client = client
                for _ in range(workers):
                    stack.spawn_worker()
                yield stack
    finally:
        stack.stop_workers()


async def wait_for(
    client: httpx.AsyncClient,
    job_id: str,
    statuses: Iterable[str],
    timeout: float = 20.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Poll a job until its status is one of `statuses`; fail the test on timeout."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in wanted:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout}s: {job}")


async def wait_for_runs(
    client: httpx.AsyncClient,
    job_id: str,
    count: int,
    timeout: float = 20.0,  # noqa: ASYNC109
) -> list[Any]:
    """Poll a job until it has `count` ended runs (`include=runs`); fail the test on timeout."""
    deadline = time.monotonic() + timeout
    runs: list[Any] = []
    while time.monotonic() < deadline:
        runs = (await client.get(f"/jobs/{job_id}?include=runs")).json()["runs"]
        if len(runs) >= count and all(r["outcome"] for r in runs):
            return runs
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} has runs {runs} after {timeout}s, not {count} ended")


async def submit(
    client: httpx.AsyncClient, type_: str, payload: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """POST /jobs and return the created job (asserting 201)."""
    response = await client.post("/jobs", json={"type": type_, "payload": payload, **extra})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def start_valkey(tmp: Path) -> EmbeddedValkey:
    """A private Valkey (for tests that flush or stop Redis)."""
    server = EmbeddedValkey(tmp)
    server.start()
    return server


def read_log(path: Path) -> str:
    """A subprocess's log, for assertion messages."""
    return path.read_text(errors="replace")


class ApiProcess(ChildProcess):
    """A real `jobplatform api` (uvicorn) process on a fixed port, so it can be killed and started again."""

    def __init__(self, settings: Settings, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        env = {**settings_env(settings), "PORT": str(self.port), "HOST": "127.0.0.1"}
        super().__init__(platform_command("api"), env=env, cwd=ROOT, log_path=log_path)
        self.settings = settings

    @property
    def base_url(self) -> str:
        """Where it serves."""
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout: float = 60) -> None:  # noqa: ASYNC109
        """Wait until `/health` answers (fail with the log if the process exits or takes too long)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url) as probe:
            while time.monotonic() < deadline:
                assert self.alive(), read_log(self.log_path) if self.log_path else "API exited"
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"API did not start: {read_log(self.log_path) if self.log_path else ''}")


@contextlib.asynccontextmanager
async def serve_api(settings: Settings, log_path: Path, workers: int = 1) -> AsyncIterator[str]:
    """A real `jobplatform api` (uvicorn, with `workers` processes) on this stack; yields its base URL."""
    port = free_port()
    env = {**settings_env(settings), "PORT": str(port), "HOST": "127.0.0.1"}
    command = platform_command("api", "--workers", str(workers))
    api = ChildProcess(command, env=env, cwd=ROOT, log_path=log_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as probe:
            for _ in range(300):
                assert api.alive(), read_log(log_path)
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"API did not start: {read_log(log_path)}")
        yield base
    finally:
        await api.terminate_async(15)
