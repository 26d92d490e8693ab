"""Nothing accepted is ever lost: worker crashes, Redis loss, Redis outage, graceful shutdown."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from backend.adapters.storage import MARKER
from backend.core.embedded import EmbeddedValkey
from tests.integration.test_worker import runs_of
from tests.utils.stack import submit, wait_for


async def test_sigkilled_worker_job_restarts_on_another_worker(isolated: Any) -> None:
    async with isolated(workers=1) as stack, await stack.client() as client:
        job = await submit(client, "sleep", {"seconds": 2})
        await wait_for(client, job["id"], {"running"})
        stack.spawn_worker()
        killed_at = time.time()
        stack.workers[0].kill()
        done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=30)
        assert done["status"] == "completed" and done["attempts"] == 2
        runs = await runs_of(stack, job["id"])
        assert [r.outcome for r in runs] == ["lost", "completed"]
        assert runs[0].worker_id != runs[1].worker_id
        restart_s = runs[1].started_at.timestamp() - killed_at
        assert restart_s < 30, restart_s  # the target; with a 2 s test lease it is a few seconds


async def test_flushed_redis_loses_nothing(isolated: Any, tmp_path: Path) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey")
    url = valkey.start()
    try:
        async with isolated(workers=0, redis=url) as stack, await stack.client() as client:
            jobs = [await submit(client, "square_sum", {"data": [i]}) for i in range(20)]
            r = aioredis.from_url(url)
            assert await r.zcard(stack.settings.queue_name) == 20
            await r.flushall()
            await r.aclose()
            stack.spawn_worker()
            for i, job in enumerate(jobs):
                done = await wait_for(client, job["id"], {"completed"}, timeout=30)
                assert done["result"] == {"value": i * i}
    finally:
        valkey.stop()


async def test_redis_down_at_submit_still_201_and_runs_when_back(isolated: Any, tmp_path: Path) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey")
    url = valkey.start()
    try:
        async with isolated(workers=0, redis=url) as stack, await stack.client() as client:
            valkey.stop()
            started = time.monotonic()
            response = await client.post("/jobs", json={"type": "cube_sum", "payload": {"data": [2]}})
            assert response.status_code == 201, response.text
            assert time.monotonic() - started < 10
            job = response.json()
            assert (await client.get("/ready")).status_code == 503
            EmbeddedValkey(tmp_path / "valkey", port=valkey.port, password=valkey.password).start()
            stack.spawn_worker()
            done = await wait_for(client, job["id"], {"completed"}, timeout=30)
            assert done["result"] == {"value": 8}
    finally:
        valkey.stop()
        _stop_port(valkey.port, valkey.password)


def _stop_port(port: int, password: str) -> None:
    """Stop the restarted Valkey (started through a second handle on the same port)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(f"AUTH {password}\r\nSHUTDOWN NOSAVE\r\n".encode())
    except OSError:
        pass


async def test_sigterm_hands_running_job_back_without_spending_an_attempt(isolated: Any) -> None:
    async with isolated(workers=1, shutdown_grace_seconds=1) as stack, await stack.client() as client:
        quick = await submit(client, "sleep", {"seconds": 0.3})
        slow = await submit(client, "sleep", {"seconds": 8})
        await wait_for(client, slow["id"], {"running"})
        await asyncio.to_thread(stack.workers[0].terminate)
        assert (await wait_for(client, quick["id"], {"completed"}))["attempts"] == 1
        handed = (await client.get(f"/jobs/{slow['id']}")).json()
        assert handed["status"] == "retrying" and handed["attempts"] == 0, handed
        stack.spawn_worker()
        done = await wait_for(client, slow["id"], {"completed"}, timeout=30)
        assert done["attempts"] == 1
        assert [r.outcome for r in await runs_of(stack, slow["id"])] == ["handed_back", "completed"]


async def test_duplicate_delivery_is_a_no_op(stack: Any, client: Any) -> None:
    from arq.connections import RedisSettings, create_pool

    job = await submit(client, "sleep", {"seconds": 0.5})
    await wait_for(client, job["id"], {"running"})
    pool = await create_pool(RedisSettings.from_dsn(stack.settings.require_redis_url()))
    try:  # a second, late delivery of the same job under another arq id
        await pool.enqueue_job(
            "run_job", job["id"], _job_id=f"dup-{uuid.uuid4()}", _queue_name=stack.settings.queue_name
        )
    finally:
        await pool.aclose()
    done = await wait_for(client, job["id"], {"completed"})
    await asyncio.sleep(0.5)
    assert done["attempts"] == 1
    assert [r.outcome for r in await runs_of(stack, job["id"])] == ["completed"]


async def test_paused_worker_loses_its_claim_and_cannot_overwrite(isolated: Any) -> None:
    import signal

    async with isolated(workers=1) as stack, await stack.client() as client:
        job = await submit(client, "sleep", {"seconds": 2.5})
        await wait_for(client, job["id"], {"running"})
        stack.spawn_worker()
        paused = stack.workers[0]
        assert paused.proc is not None
        paused.proc.send_signal(signal.SIGSTOP)  # alive but frozen: a GC pause, a stalled VM
        try:
            deadline = time.monotonic() + 45
            while len(await runs_of(stack, job["id"])) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        logs = "\n".join(w.log_path.read_text(errors="replace") for w in stack.workers)
        assert len(await runs_of(stack, job["id"])) >= 2, f"no recovery while the worker was frozen:\n{logs}"
        done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=30)
        await asyncio.sleep(1.5)  # give the resumed worker time to try (and fail) to write
        final = (await client.get(f"/jobs/{job['id']}")).json()
        assert final["status"] == "completed" and final["attempts"] == 2 == done["attempts"]
        runs = await runs_of(stack, job["id"])
        assert [r.outcome for r in runs] == ["lost", "completed"]
        assert runs[1].worker_id != runs[0].worker_id


async def test_paused_worker_cannot_replace_the_recorded_file(isolated: Any) -> None:
    import hashlib
    import signal

    async with isolated(workers=1) as stack, await stack.client() as client:
        job = await submit(client, "csv_report", {"rows": 3_000_000, "seed": 5})
        await wait_for(client, job["id"], {"running"})
        stack.spawn_worker()
        paused = stack.workers[0]
        assert paused.proc is not None
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=60)
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        assert done["status"] == "completed" and done["attempts"] == 2
        folder = stack.settings.resolved_results_dir / job["id"]
        deadline = time.monotonic() + 30  # the resumed worker finishes its (now stale) run, then cleans up
        while time.monotonic() < deadline and len(list(folder.iterdir())) != 2:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        files = sorted(p.name for p in folder.iterdir())
        assert len(files) == 2 and files[0] == MARKER, files  # the result and the deployment marker
        body = (await client.get(f"/jobs/{job['id']}/download")).content
        assert hashlib.sha256(body).hexdigest() == done["result_file"]["sha256"]


async def test_arq_in_progress_marker_is_short_lived(stack: Any, client: Any) -> None:
    """A worker killed between pick-up and claim must not strand the delivery for arq's hour-long marker."""
    from backend.adapters.queue import in_progress_ttl_s

    job = await submit(client, "sleep", {"seconds": 1})
    await wait_for(client, job["id"], {"running"})
    r = aioredis.from_url(stack.settings.require_redis_url())
    try:
        ttl_ms = await r.pttl(f"arq:in-progress:{job['id']}:0")
    finally:
        await r.aclose()
    assert 0 < ttl_ms <= in_progress_ttl_s(stack.settings.lease_seconds) * 1000
