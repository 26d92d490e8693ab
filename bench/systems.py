"""The job systems scenarios 1 and 2 compare: the platform, raw arq (default, tuned) and Celery.

Each can add worker processes, submit N no-op jobs from a concurrent client, say when all are done,
and (except Celery) when each one started.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
from arq.connections import ArqRedis, RedisSettings, create_pool

from backend.services.auth import create_key
from bench.http import Connection, build_request, run_load
from bench.stack import BenchError, Platform, Proc, Processes, Servers, clean_env, hostname, wait_connected

DONE_TIMEOUT_S = 300.0
NOOP = {"type": "sleep", "payload": {"seconds": 0}}


@dataclass
class Submitted:
    """When each job's submission returned (wall clock, comparable with the database's now())."""

    returned: dict[str, float] = field(default_factory=dict)
    first_sent: float = 0.0
    elapsed: float = 0.0


class JobSystem(Protocol):
    label: str

    @property
    def workers(self) -> list[Proc]: ...

    async def add_worker(self) -> None: ...

    def stop_workers(self) -> None: ...

    async def submit(self, n: int, clients: int, tag: str, *, probe: bool = False) -> Submitted: ...

    async def wait_done(self, tag: str, n: int) -> float:
        """Wait until all `n` jobs of `tag` finished; returns the wall-clock time the last one did."""
        ...

    async def start_times(self, tag: str) -> dict[str, float]: ...


class PlatformSystem:
    """POST /jobs over HTTP to the real API; real worker processes; rows read from PostgreSQL."""

    label = "platform"

    def __init__(self, platform: Platform, db: asyncpg.Connection) -> None:
        self.platform = platform
        self.db = db
        self.owners: dict[str, uuid.UUID] = {}

    @property
    def workers(self) -> list[Proc]:
        return self.platform.workers

    async def add_worker(self) -> None:
        await self.platform.spawn_worker()

    def stop_workers(self) -> None:
        self.platform.stop_workers()

    async def new_key(self, tag: str) -> str:
        """An API key of its own per run, so its jobs are found by the owner index."""
        raw = f"jp_bench_{tag}_{uuid.uuid4().hex}"
        _, self.owners[tag] = await create_key(self.db, f"bench-{tag}", raw)
        return raw

    async def submit(
        self, n: int, clients: int, tag: str, *, probe: bool = False, bodies: Sequence[dict[str, Any]] = ()
    ) -> Submitted:
        """POST `n` jobs from `clients` connections: the no-op, or `bodies[i]` (requests built beforehand,
        so the clock measures the platform, not JSON encoding in the client)."""
        headers = {"X-API-Key": await self.new_key(tag)}
        requests = [build_request("POST", "/jobs", headers, body) for body in bodies] or [
            build_request("POST", "/jobs", headers, NOOP)
        ]
        out = Submitted(first_sent=time.time())

        def record(_: int, status: int, body: bytes, at: float) -> None:
            if probe and status == 201:
                out.returned[json.loads(body)["id"]] = at

        result = await run_load(
            self.platform.port, clients, lambda i: requests[i % len(requests)], count=n, on_response=record
        )
        result.require(201)
        out.elapsed = result.elapsed
        return out

    async def submit_paced(self, n: int, gap: float, tag: str) -> Submitted:
        """One job at a time, `gap` seconds apart (low load)."""
        request = build_request("POST", "/jobs", {"X-API-Key": await self.new_key(tag)}, NOOP)
        out = Submitted(first_sent=time.time())
        conn = Connection(self.platform.port)
        try:
            for _ in range(n):
                status, body = await conn.request(request)
                if status != 201:
                    raise BenchError(f"POST /jobs answered {status}: {body[:200]!r}")
                out.returned[json.loads(body)["id"]] = time.time()
                await asyncio.sleep(gap)
        finally:
            await conn.close()
        return out

    async def wait_done(self, tag: str, n: int) -> float:
        owner = self.owners[tag]
        deadline = time.monotonic() + DONE_TIMEOUT_S
        sql = (
            "SELECT count(*) FILTER (WHERE status = 'completed'), "
            "count(*) FILTER (WHERE status IN ('failed', 'cancelled')), "
            "extract(epoch FROM max(finished_at)) FROM jobs WHERE owner_id = $1"
        )
        while time.monotonic() < deadline:
            done, bad, last = await self.db.fetchrow(sql, owner)
            if bad:
                raise BenchError(f"{bad} bench jobs of {tag} failed")
            if done >= n:
                return float(last)
            for worker in [*self.platform.workers, *([self.platform.api] if self.platform.api else [])]:
                worker.check_alive()
            await asyncio.sleep(0.05)
        raise BenchError(f"platform: jobs of {tag} not all completed after {DONE_TIMEOUT_S:g}s")

    async def drain(self, n: int, clients: int, tag: str, bodies: Sequence[dict[str, Any]] = ()) -> float:
        """jobs/s of one fresh worker emptying a queue of `n` jobs, no-ops unless `bodies` are given (first
        start → last finish)."""
        await self.submit(n, clients, tag, bodies=bodies)
        await self.add_worker()
        await self.wait_done(tag, n)
        first, last = await self.db.fetchrow(
            "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)) "
            "FROM jobs WHERE owner_id = $1",
            self.owners[tag],
        )
        return n / float(last - first)

    async def start_times(self, tag: str) -> dict[str, float]:
        rows = await self.db.fetch(
            "SELECT id::text, extract(epoch FROM started_at) FROM jobs WHERE owner_id = $1", self.owners[tag]
        )
        return {r[0]: float(r[1]) for r in rows}


class RedisCounted:
    """Completion by a Redis counter the no-op increments."""

    label = ""
    servers: Servers
    workers: list[Proc]

    async def wait_done(self, tag: str, n: int) -> float:
        redis = self.servers.redis()
        try:
            deadline = time.monotonic() + DONE_TIMEOUT_S
            while time.monotonic() < deadline:
                if int(await redis.get(f"bench:done:{tag}") or 0) >= n:
                    return time.time()
                for worker in self.workers:
                    worker.check_alive()
                await asyncio.sleep(0.01)
        finally:
            await redis.aclose()
        raise BenchError(f"{self.label}: jobs of {tag} not all done after {DONE_TIMEOUT_S:g}s")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


class ArqSystem(RedisCounted):
    """Raw arq: enqueue_job from the bench, `bench.baselines.arq_worker` processes."""

    def __init__(self, servers: Servers, procs: Processes, mode: str) -> None:
        self.servers = servers
        self.procs = procs
        self.mode = mode
        self.label = f"raw arq, {mode}"
        self.queue = f"bench:arq:{mode}"
        self.workers: list[Proc] = []

    async def add_worker(self, settle: float = 0.3) -> None:
        cmd = [
            sys.executable,
            "-m",
            "bench.baselines.arq_worker",
            self.mode,
            self.servers.redis_url,
            self.queue,
        ]
        worker = self.procs.start(f"arq-{self.mode}", cmd, clean_env())
        self.workers.append(worker)
        await wait_connected(worker, self.servers.redis_port, settle)

    async def drain(self, n: int, clients: int, tag: str) -> float:
        """jobs/s of one fresh worker emptying a queue of `n` jobs (connected to Redis → last done)."""
        await self.submit(n, clients, tag)
        await self.add_worker(settle=0)
        start = time.time()
        return n / (await self.wait_done(tag, n) - start)

    async def submit(self, n: int, clients: int, tag: str, *, probe: bool = False) -> Submitted:
        pool = await create_pool(RedisSettings.from_dsn(self.servers.redis_url))
        try:
            return await self._enqueue(pool, n, clients, tag, probe)
        finally:
            await pool.aclose()

    async def _enqueue(self, pool: ArqRedis, n: int, clients: int, tag: str, probe: bool) -> Submitted:
        out = Submitted(first_sent=time.time())
        fn, arg = ("probe", f"bench:starts:{tag}") if probe else ("noop", f"bench:done:{tag}")
        left = n
        start = time.perf_counter()

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                job = await pool.enqueue_job(fn, arg, _queue_name=self.queue)
                assert job is not None
                out.returned[job.job_id] = time.time()

        await asyncio.gather(*(client() for _ in range(clients)))
        out.elapsed = time.perf_counter() - start
        return out

    async def submit_paced(self, n: int, gap: float, tag: str) -> Submitted:
        pool = await create_pool(RedisSettings.from_dsn(self.servers.redis_url))
        out = Submitted(first_sent=time.time())
        try:
            for _ in range(n):
                job = await pool.enqueue_job("probe", f"bench:starts:{tag}", _queue_name=self.queue)
                assert job is not None
                out.returned[job.job_id] = time.time()
                await asyncio.sleep(gap)
        finally:
            await pool.aclose()
        return out

    async def wait_started(self, tag: str, n: int) -> None:
        redis = self.servers.redis()
        try:
            deadline = time.monotonic() + DONE_TIMEOUT_S
            while await redis.hlen(f"bench:starts:{tag}") < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.label}: probes of {tag} not all started")
                await asyncio.sleep(0.01)
        finally:
            await redis.aclose()

    async def start_times(self, tag: str) -> dict[str, float]:
        redis = self.servers.redis()
        try:
            raw = await redis.hgetall(f"bench:starts:{tag}")
        finally:
            await redis.aclose()
        return {k.decode(): float(v) for k, v in raw.items()}


class CelerySystem(RedisCounted):
    """Celery 5 on the same Redis: prefork workers, one child each (the same no-op)."""

    label = "Celery 5"

    def __init__(self, servers: Servers, procs: Processes) -> None:
        from bench.baselines.celery_app import app

        self.servers = servers
        self.procs = procs
        self.queue = "bench-celery"
        self.workers: list[Proc] = []
        self.app = app
        app.conf.broker_url = servers.redis_url

    async def add_worker(self) -> None:
        name = f"bench{len(self.workers) + 1}-{time.monotonic_ns()}"
        cmd = [sys.executable, "-m", "celery", "-A", "bench.baselines.celery_app", "worker"]
        cmd += ["--concurrency", "1", "-n", f"{name}@%h", "-Q", self.queue, "--loglevel", "WARNING"]
        worker = self.procs.start("celery", cmd, clean_env(BENCH_CELERY_BROKER=self.servers.redis_url))
        self.workers.append(worker)
        target = f"{name}@{hostname()}"

        async def answers() -> bool:
            worker.check_alive()
            replies = await asyncio.to_thread(self.app.control.ping, destination=[target], timeout=0.5)
            return bool(replies)

        from bench.stack import wait_until

        await wait_until(answers, f"{worker.name} to answer ping")

    async def submit(self, n: int, clients: int, tag: str, *, probe: bool = False) -> Submitted:
        out = Submitted(first_sent=time.time())
        counter = f"bench:done:{tag}"

        def send() -> None:
            with self.app.producer_or_acquire() as producer:
                for _ in range(n):
                    self.app.send_task("bench.noop", args=[counter], queue=self.queue, producer=producer)

        start = time.perf_counter()
        await asyncio.to_thread(send)
        out.elapsed = time.perf_counter() - start
        return out

    async def start_times(self, tag: str) -> dict[str, float]:
        raise NotImplementedError("Celery is only a throughput baseline")
