"""The servers and processes a benchmark run stands up, and tears down whatever happens."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from redis.asyncio import Redis

from backend.cli import migrate
from backend.core.config import Settings
from backend.core.embedded import (
    EmbeddedPostgres,
    EmbeddedValkey,
    create_database,
    database_url,
    free_port,
)
from backend.launcher import ChildProcess, platform_command, stop_all

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench"
READY_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """A benchmark could not run as intended (a server died, a wait timed out, a request failed)."""


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any platform setting, so the code's defaults apply."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in fields}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


async def wait_until(check: Callable[[], Any], what: str, within: float = READY_TIMEOUT_S) -> Any:
    """Poll an (async or sync) check until it returns something truthy."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    raise BenchError(f"timed out after {within:g}s waiting for {what}")


class Proc(ChildProcess):
    """A child process with its log in the run folder, started at once."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__(args, env=env, cwd=log_dir, log_path=log_dir / f"{name}.log")
        self.name = name
        self.start()

    def check_alive(self) -> None:
        """Raise with the tail of its log if the process has died."""
        if not self.alive():
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path else ""
            raise BenchError(f"{self.name} exited with {self.returncode}:\n{tail}")

    def peak_rss(self) -> int:
        """Peak resident set size so far (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"no VmHWM for {self.name}")

    def connected_to(self, port: int) -> bool:
        """Whether the process holds an established TCP connection to `port` on loopback."""
        try:
            conns = psutil.Process(self.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in conns)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        self.terminate(timeout)


@dataclass
class Processes:
    """Every child this run started, so the run can always end them."""

    log_dir: Path
    procs: list[Proc] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> Proc:
        n = self.counts[name] = self.counts.get(name, 0) + 1
        proc = Proc(f"{name}-{n}", args, env, self.log_dir)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        stop_all(self.procs, timeout=10)


@dataclass
class Servers:
    """Embedded PostgreSQL and Valkey for this run, and the migrated benchmark database."""

    work: Path
    pg: EmbeddedPostgres | None = None
    valkey: EmbeddedValkey | None = None
    admin_url: str = ""
    db_url: str = ""
    redis_url: str = ""

    async def start(self) -> Servers:
        self.pg = EmbeddedPostgres(self.work / "postgres")
        self.admin_url = await asyncio.to_thread(self.pg.start)
        self.valkey = EmbeddedValkey(self.work / "run" / "valkey")
        self.redis_url = await asyncio.to_thread(self.valkey.start)
        await create_database(self.admin_url, DATABASE, drop=True)
        self.db_url = database_url(self.admin_url, DATABASE)
        await asyncio.to_thread(migrate, self.db_url)
        return self

    @property
    def redis_port(self) -> int:
        assert self.valkey is not None
        return self.valkey.port

    @property
    def pg_dsn(self) -> str:
        """The benchmark database for asyncpg (the bench reads job rows directly)."""
        return self.db_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url)

    def pg_pid(self) -> int | None:
        return None if self.pg is None or self.pg.server is None else self.pg.server.get_pid()

    def valkey_pid(self) -> int | None:
        return None if self.valkey is None or self.valkey.process is None else self.valkey.process.pid

    def stop(self) -> None:
        if self.valkey is not None:
            self.valkey.stop()
        if self.pg is not None:
            self.pg.stop()


@dataclass
class Platform:
    """The real thing: one `jobplatform api` process and any number of `jobplatform worker` processes."""

    servers: Servers
    procs: Processes
    results_dir: Path
    key: str = field(default_factory=lambda: "jp_bench_" + secrets.token_urlsafe(24))
    port: int = field(default_factory=free_port)
    api: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # `--set NAME=VALUE` for every platform process

    def env(self, **overrides: str) -> dict[str, str]:
        return clean_env(
            DATABASE_URL=self.servers.db_url,
            REDIS_URL=self.servers.redis_url,
            RESULTS_DIR=str(self.results_dir),
            DATA_DIR=str(self.results_dir.parent),
            BOOTSTRAP_API_KEY=self.key,
            PORT=str(self.port),
            HOST="127.0.0.1",
            LOG_LEVEL="WARNING",
            # The bench drives all its load through one API key: it stands for many clients, so the
            # per-key waiting limit would stop scenario 3's burst; the check itself still runs.
            MAX_WAITING_JOBS_PER_KEY="1000000",
            # Scenario 10's webhook receiver listens on loopback, which webhooks may only reach with this
            # (it changes nothing else: no other scenario's jobs have a webhook_url).
            WEBHOOK_ALLOW_PRIVATE="true",
            **{**self.settings, **overrides},
        )

    async def start_api(self) -> None:
        from bench.http import get_status

        self.api = self.procs.start("api", platform_command("api"), self.env())

        async def healthy() -> bool:
            assert self.api is not None
            self.api.check_alive()
            return await get_status("127.0.0.1", self.port, "/health") == 200

        await wait_until(healthy, "the API to answer /health")

    async def spawn_worker(self, **overrides: str) -> Proc:
        worker = self.procs.start("worker", platform_command("worker"), self.env(**overrides))
        self.workers.append(worker)
        await wait_connected(worker, self.servers.redis_port)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def stop(self) -> None:
        """Its workers, then its API."""
        self.stop_workers()
        if self.api is not None:
            self.api.stop()
            self.api = None


async def wait_connected(proc: Proc, port: int, settle: float = 0.3) -> None:
    """Wait until a freshly spawned worker has connected to Redis (it polls right after)."""

    def connected() -> bool:
        proc.check_alive()
        return proc.connected_to(port)

    await wait_until(connected, f"{proc.name} to connect to Redis")
    await asyncio.sleep(settle)


async def pg_connect(servers: Servers) -> asyncpg.Connection:
    return await asyncpg.connect(servers.pg_dsn)


def hostname() -> str:
    return socket.gethostname()


class CpuMeter:
    """CPU used by groups of processes over a phase, as a share of one core (1.0 = one core busy)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[int, float] = {}
        self.started = 0.0

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def start(self) -> None:
        self.before = {pid: self._cpu(pid) for pids in self.groups.values() for pid in pids()}
        self.started = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        used = {}
        for name, pids in self.groups.items():
            seconds = sum(self._cpu(pid) - self.before.get(pid, 0.0) for pid in pids())
            used[name] = seconds / wall
        return used

    @staticmethod
    def describe(used: dict[str, float]) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in used.items() if share >= 0.005)


def family(pid: int | None) -> list[int]:
    """A process and all its descendants (PostgreSQL's backends, Celery's pool children)."""
    if pid is None:
        return []
    try:
        proc = psutil.Process(pid)
        return [pid, *(child.pid for child in proc.children(recursive=True))]
    except psutil.Error:
        return []
