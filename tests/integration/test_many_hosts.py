"""Many processes, as on many hosts: two API and three worker processes on one PostgreSQL, one Valkey and
one S3 store, each process with a DATA_DIR of its own (nothing shared on disk), while workers are
SIGKILLed and replaced and one API is killed and started again.

What running on several machines must keep, checked from what the platform stored rather than from what
it answered: every job completed exactly once (`job_runs`: one completed run, no two runs of a job
overlapping), every file is in the store once and downloads from either API with the bytes its seed
makes, a schedule fires once per slot, the `/stats` rollups equal the jobs table, purge started on two
hosts at once removes each expired job and its files once, and no process holds more PostgreSQL
connections than the README's budget gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
import re
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from backend.launcher import ChildProcess, platform_command
from tests.utils import db
from tests.utils.s3 import S3Server, object_prefix
from tests.utils.stack import ROOT, ApiProcess, Stack, WorkerProcess, read_log, settings_env
from worker.settings import CRON_CONNECTIONS
from worker.tasks.csv_report import CHUNK_ROWS, HEADER, format_chunk

JOBS = 2000
APIS = 2
WORKERS = 3
SUBMIT_SECONDS = 15.0  # submissions are spread over this long, so that the kills land among them
KILL_EVERY_S = 2.5
MIN_KILLS = 5
MAX_KILLS = 8
API_DOWN_AT_S = 4.0
PURGE_AT_S = 7.0
PURGERS = 2
EXPIRED = 24  # finished jobs (with files) made to look 30 days old, for purge to find
REPORT_ROWS = (200, 1_000, 5_000)
REPORT_SEEDS = 5
TERMINAL = ("completed", "failed", "cancelled")

RUNS = """
    SELECT r.job_id::text AS job_id, r.worker_id, r.started_at, r.ended_at, r.outcome, j.attempts
    FROM job_runs r JOIN jobs j ON j.id = r.job_id WHERE j.owner_id = $1
    ORDER BY r.job_id, r.started_at, r.id
"""
CONNECTIONS = """
    SELECT application_name, count(*) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name <> '' GROUP BY application_name
"""
PURGE_LINE = re.compile(r"purge removed: (\d+) jobs, (\d+) files")
PURGE_LOG = re.compile(r"purge done.* jobs=(\d+) files=(\d+)")


def on_host(settings: Settings, tmp: Path, name: str) -> dict[str, Any]:
    """Settings for a process on a host of its own: its own DATA_DIR and RESULTS_DIR, and its name on
    its PostgreSQL connections (`application_name`), so each process's connections can be counted."""
    home = tmp / name
    url = settings.require_database_url()
    joiner = "&" if "?" in url else "?"
    return {
        "data_dir": home,
        "results_dir": home / "results",
        "database_url": f"{url}{joiner}application_name={name}",
    }


def job_body(i: int, rng: random.Random) -> dict[str, Any]:
    """Mostly short jobs, 15 % that run long enough for a kill to land mid-run, 10 % reports (files)."""
    kind = i % 20
    if kind in (0, 10):
        payload = {"rows": rng.choice(REPORT_ROWS), "seed": rng.randrange(REPORT_SEEDS)}
        return {"type": "csv_report", "payload": payload, "max_attempts": 20}
    if kind in (1, 2, 3):
        payload = {"seconds": rng.choice([0.2, 0.5, 1.0, 2.0])}
        return {"type": "sleep", "payload": payload, "max_attempts": 20}
    if kind in (17, 18, 19):
        return {"type": "sleep", "payload": {"seconds": 0}, "max_attempts": 20}
    data = [rng.randint(-50, 50) for _ in range(rng.randint(1, 20))]
    return {"type": "square_sum" if kind < 10 else "cube_sum", "payload": {"data": data}, "max_attempts": 20}


def expected_report(rows: int, seed: int) -> bytes:
    """The bytes `csv_report` makes for (rows, seed): the same seed always gives the same file."""
    rng, chunks, done = random.Random(seed), [HEADER], 0
    while done < rows:
        count = min(CHUNK_ROWS, rows - done)
        chunks.append(format_chunk(rng, done + 1, count))
        done += count
    return "".join(chunks).encode()


class Fleet:
    """The processes of the run: APIs, workers and their replacements, each on a host of its own."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.apis: list[ApiProcess] = []
        self.kills = 0

    def start_api(self) -> ApiProcess:
        name = f"api-{len(self.apis)}"
        settings = self.stack.settings.model_copy(update=on_host(self.stack.settings, self.stack.tmp, name))
        api = ApiProcess(settings, self.stack.tmp / f"{name}.log").start()
        self.apis.append(api)
        return api

    def start_worker(self) -> None:
        name = f"worker-{len(self.stack.workers)}"
        self.stack.spawn_worker(**on_host(self.stack.settings, self.stack.tmp, name))

    def all_workers_ready(self) -> bool:
        """Every live worker has said it is ready (a replacement still starting has not)."""
        return all(worker_ready(w) for w in self.stack.workers if w.alive())

    def kill_a_worker(self, rng: random.Random) -> None:
        """SIGKILL one live worker (a host lost) and start a replacement on a new host."""
        victim = rng.choice([w for w in self.stack.workers if w.alive()])
        victim.kill()
        self.kills += 1
        self.start_worker()

    async def purge_from_hosts(self, count: int) -> list[tuple[int, int]]:
        """`jobplatform purge` on `count` hosts at once: (jobs, files) each one removed."""
        procs = []
        for n in range(count):
            name = f"cron-{n}"
            settings = self.stack.settings.model_copy(
                update=on_host(self.stack.settings, self.stack.tmp, name)
            )
            log = self.stack.tmp / f"{name}.log"
            procs.append(
                ChildProcess(platform_command("purge"), env=settings_env(settings), cwd=ROOT, log_path=log)
            )
        for proc in procs:
            proc.start()
        codes = await asyncio.gather(*(asyncio.to_thread(p.wait_or_kill, 60) for p in procs))
        removed = []
        for proc, code in zip(procs, codes, strict=True):
            assert proc.log_path is not None
            out = read_log(proc.log_path)
            assert code == 0, out
            found = PURGE_LINE.search(out)
            assert found, out
            removed.append((int(found[1]), int(found[2])))
        return removed

    def worker_purges(self) -> list[tuple[int, int]]:
        """(jobs, files) of each purge the workers' own cron ran (one that found the lock taken logs none)."""
        found = []
        for log in sorted(self.stack.tmp.glob("worker-*.log")):
            found += [(int(m[1]), int(m[2])) for m in PURGE_LOG.finditer(read_log(log))]
        return found


def worker_ready(worker: WorkerProcess) -> bool:
    """Whether the worker process has finished starting (its log says so)."""
    return worker.log_path is not None and "worker ready" in read_log(worker.log_path)


class Submitter:
    """Clients that send each job to one API and, on a connection error, to the other with the same
    Idempotency-Key (so a request the killed API had committed is answered by a replay, not a 2nd job)."""

    def __init__(self, apis: list[ApiProcess], key: str) -> None:
        headers = {"X-API-Key": key}
        limits = httpx.Limits(max_connections=32)
        self.clients = [
            httpx.AsyncClient(base_url=a.base_url, headers=headers, timeout=30, limits=limits) for a in apis
        ]
        self.failovers = 0
        self.replays = 0

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def request(self, i: int, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send to API `i % 2`, then alternate on connection errors, 409 (in flight) and 503."""
        for attempt in range(200):
            client = self.clients[(i + attempt) % len(self.clients)]
            try:
                response = await client.request(method, url, **kwargs)
            except httpx.TransportError:
                self.failovers += 1
                await asyncio.sleep(0.05)
                continue
            if response.status_code not in (409, 503):
                return response
            await asyncio.sleep(0.1)
        raise AssertionError(f"{method} {url} never answered")

    async def submit(self, i: int, body: dict[str, Any]) -> str:
        headers = {"Idempotency-Key": f"many-hosts-{i}"}
        response = await self.request(i, "POST", "/jobs", json=body, headers=headers)
        assert response.status_code == 201, response.text
        self.replays += response.headers.get("idempotent-replayed") == "true"
        return str(response.json()["id"])


async def until(check: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.25)


async def count_left(settings: Settings) -> int:
    """Jobs not yet terminal."""
    rows = await db.fetch(
        settings, "SELECT count(*) FROM jobs WHERE status NOT IN ('completed','failed','cancelled')"
    )
    return int(rows[0][0])


async def sample_connections(settings: Settings, peaks: Counter[str]) -> None:
    """Record the most PostgreSQL connections each named process held at once (every 0.2 s)."""
    async with db.pool(settings) as pool:
        while True:
            for row in await pool.fetch(CONNECTIONS):
                peaks[row["application_name"]] = max(peaks[row["application_name"]], row["n"])
            await asyncio.sleep(0.2)


async def seed_expired(fleet: Fleet, key: str) -> list[str]:
    """EXPIRED finished reports of another key, then made to look finished 30 days ago."""
    settings = fleet.stack.settings
    async with httpx.AsyncClient(base_url=fleet.apis[0].base_url, headers={"X-API-Key": key}) as client:
        ids = []
        for n in range(EXPIRED):
            body = {"type": "csv_report", "payload": {"rows": 200, "seed": n}}
            response = await client.post("/jobs", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])

    async def all_done() -> bool:
        rows = await db.fetch(
            settings, "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'", ids
        )
        return int(rows[0][0]) == EXPIRED

    await until(all_done, 60, "the jobs to expire did not complete")
    await db.execute(
        settings, "UPDATE jobs SET finished_at = now() - interval '30 days' WHERE id = ANY($1::uuid[])", ids
    )
    return ids


@pytest.mark.slow
async def test_two_apis_and_killed_workers_on_shared_services_lose_and_repeat_nothing(
    isolated: Any, s3_server: S3Server
) -> None:
    rng = random.Random(14)
    # Idle workers poll Redis every 50 ms rather than the suite's 10 ms: eight worker processes' polls
    # would otherwise cost a share of two cores.
    overrides = s3_server.overrides(stats_interval_seconds=2, worker_concurrency=10, poll_delay_seconds=0.05)
    async with isolated(workers=0, **overrides) as stack:
        fleet = Fleet(stack)
        for _ in range(APIS):
            fleet.start_api()
        for _ in range(WORKERS):
            fleet.start_worker()
        key, old_key = await stack.new_key("many-hosts"), await stack.new_key("expired")
        peaks: Counter[str] = Counter()
        sampler = asyncio.create_task(sample_connections(stack.settings, peaks))
        submitter = Submitter(fleet.apis, key)
        try:
            await asyncio.gather(*(api.ready() for api in fleet.apis))
            expired = await seed_expired(fleet, old_key)
            deployment = (await db.fetch(stack.settings, "SELECT id FROM deployment"))[0][0]
            assert stack.settings.results_url is not None
            store_prefix = object_prefix(stack.settings.results_url, deployment)
            stored_before = await s3_server.keys(store_prefix)
            assert all(any(f"/{job_id}/" in k for k in stored_before) for job_id in expired)

            schedule = await submitter.request(
                1,
                "POST",
                "/schedules",
                json={"name": "tick", "every_seconds": 1, "job": job_body(4, rng)},
            )
            assert schedule.status_code == 201, schedule.text
            schedule_id = schedule.json()["id"]

            bodies = [job_body(i, rng) for i in range(JOBS)]
            started = time.monotonic()
            slots = asyncio.Semaphore(32)

            async def paced(i: int) -> str:
                await asyncio.sleep(max(0.0, started + i * SUBMIT_SECONDS / JOBS - time.monotonic()))
                async with slots:
                    return await submitter.submit(i, bodies[i])

            submitting = asyncio.gather(*(paced(i) for i in range(JOBS)))

            async def restart_an_api() -> None:
                await asyncio.sleep(API_DOWN_AT_S)
                fleet.apis[0].kill()  # SIGKILL: requests in flight are cut off
                await asyncio.sleep(1.5)
                fleet.apis[0].start()
                await fleet.apis[0].ready()

            async def purge_midway() -> list[tuple[int, int]]:
                await asyncio.sleep(PURGE_AT_S)
                return await fleet.purge_from_hosts(PURGERS)

            side = asyncio.gather(restart_an_api(), purge_midway())
            # One host lost at a time: the next kill waits for the last replacement to be up, so two
            # workers always serve (killing starting ones too left none, for 20 s on a loaded machine).
            give_up = time.monotonic() + 180
            while (not submitting.done() and fleet.kills < MAX_KILLS) or fleet.kills < MIN_KILLS:
                assert time.monotonic() < give_up, f"replacement workers did not start: {stack.tmp}"
                await asyncio.sleep(KILL_EVERY_S)
                if fleet.all_workers_ready():
                    fleet.kill_a_worker(rng)
            ids = await submitting
            _, purged_by_cli = await side

            await submitter.request(0, "PATCH", f"/schedules/{schedule_id}", json={"paused": True})
            await until(lambda: _none_left(stack.settings), 90, "jobs still waiting or running")
            owner = (await db.fetch(stack.settings, "SELECT owner_id FROM jobs WHERE id = $1", ids[0]))[0][0]
            total = (await db.fetch(stack.settings, "SELECT count(*) FROM jobs WHERE owner_id = $1", owner))[
                0
            ][0]

            async def stats_folded() -> bool:
                totals = (await submitter.request(1, "GET", "/stats?window=1h")).json()["totals"]
                assert totals["created"] <= total and totals["completed"] <= total, (totals, total)
                return bool(totals["created"] == total and totals["completed"] == total)

            await until(stats_folded, 30, "the stats rollups did not catch up")
            stats = (await submitter.request(0, "GET", "/stats?window=1h")).json()["totals"]
            left_events = (await db.fetch(stack.settings, "SELECT count(*) FROM stats_events"))[0][0]
            jobs = await db.fetch(
                stack.settings,
                "SELECT id::text, type, status, payload, result, result_file, schedule_fire_at, "
                "schedule_id::text AS schedule_id FROM jobs WHERE owner_id = $1",
                owner,
            )
            runs = await db.fetch(stack.settings, RUNS, owner)
            stored = await s3_server.keys(store_prefix)
            uploads = await s3_server.uploads(store_prefix)
            downloads = await download_every_report(
                fleet.apis, key, [j for j in jobs if j["type"] == "csv_report"]
            )
            worker_purges = fleet.worker_purges()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await submitter.aclose()
            stack.stop_workers()
            await asyncio.gather(*(api.terminate_async(15) for api in fleet.apis))

    # The chaos bit: workers killed, an API cut off mid-request and its clients sent to the other one.
    assert fleet.kills >= MIN_KILLS and submitter.failovers > 0, (fleet.kills, submitter.failovers)

    # Exactly the submitted jobs, once each (a retried POST was a replay, never a second job).
    submitted = {j["id"] for j in jobs if j["schedule_id"] is None}
    assert len(ids) == len(set(ids)) == JOBS and submitted == set(ids)
    assert {j["status"] for j in jobs} == {"completed"}, Counter(j["status"] for j in jobs)
    for job in jobs:
        if job["type"] in ("square_sum", "cube_sum"):
            power = 2 if job["type"] == "square_sum" else 3
            assert job["result"] == {"value": sum(x**power for x in job["payload"]["data"])}, job

    check_runs_exactly_once(runs, {j["id"] for j in jobs})
    check_schedule_fired_once_per_slot([j for j in jobs if j["schedule_id"] == schedule_id])

    # Every report: its recorded object in the store, and no other unless a run of it was cut off by a
    # kill (a worker killed between its completion and pruning the earlier run's file leaves that file,
    # until purge removes the job); the bytes of its seed from either API; no upload left open; the
    # expired jobs' objects gone.
    reports = [j for j in jobs if j["type"] == "csv_report"]
    assert len(reports) == JOBS // 10 and downloads == len(reports)
    objects: dict[str, set[str]] = defaultdict(set)
    for name in stored:
        relative = name.removeprefix(store_prefix)
        objects[relative.split("/")[0]].add(relative)
    interrupted = {r["job_id"] for r in runs if r["outcome"] == "lost"}
    for job in reports:
        assert job["result_file"]["key"] in objects[job["id"]], (job["id"], objects[job["id"]])
        assert len(objects[job["id"]]) == 1 or job["id"] in interrupted, (job["id"], objects[job["id"]])
    assert not any(objects[job_id] for job_id in expired), "purge left files of expired jobs"
    assert uploads == []

    # Purge from two hosts at once (and any worker cron): each expired job and its file removed once.
    purged = purged_by_cli + worker_purges
    assert sum(jobs_ for jobs_, _ in purged) == EXPIRED and sum(files for _, files in purged) == EXPIRED, (
        purged
    )

    # Stats: every job counted once, while the workers that fold the events (one at a time, under an
    # advisory lock) were being killed; and the fold ran: no event is left.
    assert stats == {"created": total, "completed": total, "failed": 0, "cancelled": 0}, (stats, total)
    assert left_events == 0

    # Connection budget (README, "Running on many hosts"): per API process DB_POOL_SIZE, per worker
    # WORKER_CONCURRENCY + CRON_CONNECTIONS, per `jobplatform purge` 2.
    budget = {
        "api": stack.settings.db_pool_size,
        "worker": stack.settings.worker_concurrency + CRON_CONNECTIONS,
        "cron": 2,
    }
    assert {name.split("-")[0] for name in peaks} >= {"api", "worker"}, peaks
    over = {name: n for name, n in peaks.items() if n > budget.get(name.split("-")[0], 0)}
    assert not over, (over, budget)

    # Nothing was written to a local results folder on any host: the store is the only shared place.
    assert not [p for p in stack.tmp.glob("*/results/**/*") if p.is_file()]


async def _none_left(settings: Settings) -> bool:
    return await count_left(settings) == 0


def check_runs_exactly_once(runs: list[Any], job_ids: set[str]) -> None:
    """Each job: one completed run, last; every run ended; no two runs overlap; attempts add up."""
    by_job: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        by_job[run["job_id"]].append(run)
    assert set(by_job) == job_ids
    for job_id, history in by_job.items():
        outcomes = [r["outcome"] for r in history]
        assert outcomes.count("completed") == 1 and outcomes[-1] == "completed", (job_id, outcomes)
        assert all(r["ended_at"] is not None for r in history), (job_id, history)
        for prev, nxt in itertools.pairwise(history):
            assert nxt["started_at"] >= prev["ended_at"], f"overlapping runs of {job_id}: {history}"
        assert history[0]["attempts"] == sum(1 for o in outcomes if o != "handed_back"), (job_id, history)
    outcomes = Counter(r["outcome"] for r in runs)
    assert outcomes["lost"] > 0, f"no run was interrupted by a kill: {outcomes}"
    completing = {r["worker_id"] for r in runs if r["outcome"] == "completed"}
    assert len(completing) > WORKERS, f"replacement workers did no work: {completing}"


def check_schedule_fired_once_per_slot(fired: list[Any]) -> None:
    """`every_seconds=1` while workers were killed: one job per slot, on the grid, few slots merged."""
    slots = sorted(j["schedule_fire_at"] for j in fired)
    assert len(slots) >= 10, slots
    assert len(set(slots)) == len(slots), "a slot fired twice"
    assert all((b - a) % timedelta(seconds=1) == timedelta(0) for a, b in itertools.pairwise(slots)), slots
    span = int((slots[-1] - slots[0]).total_seconds()) + 1
    # A slot is skipped only when every worker was late past it (then one catch-up fire stands for it).
    assert len(slots) >= 0.8 * span, f"{len(slots)} fires over {span} slots: {slots}"


async def download_every_report(apis: list[ApiProcess], key: str, reports: list[Any]) -> int:
    """Each report from one API in full, and its last 100 bytes from the other: the bytes its seed makes."""
    expected = {(r, s): expected_report(r, s) for r in REPORT_ROWS for s in range(REPORT_SEEDS)}
    clients = [httpx.AsyncClient(base_url=a.base_url, headers={"X-API-Key": key}, timeout=60) for a in apis]
    slots = asyncio.Semaphore(8)

    async def check(i: int, job: Any) -> None:
        content = expected[(job["payload"]["rows"], job["payload"]["seed"])]
        meta = job["result_file"]
        assert meta["sha256"] == hashlib.sha256(content).hexdigest() and meta["size_bytes"] == len(content)
        async with slots:
            url = f"/jobs/{job['id']}/download"
            full = await clients[i % 2].get(url)
            tail = await clients[(i + 1) % 2].get(url, headers={"Range": "bytes=-100"})
        assert full.status_code == 200 and hashlib.sha256(full.content).hexdigest() == meta["sha256"], job[
            "id"
        ]
        assert tail.status_code == 206 and tail.content == content[-100:], job["id"]

    try:
        await asyncio.gather(*(check(i, job) for i, job in enumerate(reports)))
    finally:
        for client in clients:
            await client.aclose()
    return len(reports)
