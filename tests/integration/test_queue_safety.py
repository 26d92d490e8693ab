"""The delivery channel guards itself: a password on the embedded server, JSON messages, a bounded horizon,
and a long run never picked up twice."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from backend.core.embedded import EmbeddedValkey
from tests.integration.test_worker import runs_of
from tests.utils.stack import Stack, read_log, submit, wait_for


def test_embedded_valkey_requires_its_password(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path)
    url = server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), 2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(64).startswith(b"-NOAUTH")
        assert server.password in url
        conf = tmp_path / "valkey.conf"
        assert conf.stat().st_mode & 0o077 == 0, "the password file must be private"
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes() if server.process else b""
        assert server.password.encode() not in cmdline
    finally:
        server.stop()


async def test_queue_messages_are_json(stack: Stack, client: Any) -> None:
    later = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    job = await submit(client, "sleep", {"seconds": 0}, scheduled_at=later)
    r = aioredis.from_url(stack.settings.require_redis_url())
    try:
        raw = await r.get(f"arq:job:{job['id']}:0")
    finally:
        await r.aclose()
    assert raw is not None
    message = json.loads(raw)
    assert message["f"] == "run_job" and message["a"] == [job["id"]]
    await client.post(f"/jobs/{job['id']}/cancel")


class Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path("/tmp/jp-pickle-ran").touch, ())


async def test_a_pickled_message_is_never_executed(stack: Stack) -> None:
    marker = Path("/tmp/jp-pickle-ran")
    marker.unlink(missing_ok=True)  # noqa: ASYNC240
    delivery = f"{uuid.uuid4()}:0"
    payload = pickle.dumps({"t": 1, "f": "run_job", "a": [Boom()], "k": {}, "et": 0})
    r = aioredis.from_url(stack.settings.require_redis_url())
    try:
        await r.set(f"arq:job:{delivery}", payload, px=60_000)
        await r.zadd(stack.settings.queue_name, {delivery: 0})
        for _ in range(40):  # the workers poll every 10 ms; give them a moment to try it
            if not await r.zscore(stack.settings.queue_name, delivery):
                break
            await asyncio.sleep(0.05)
    finally:
        await r.aclose()
    assert not marker.exists(), "a worker unpickled a queue message"  # noqa: ASYNC240


async def test_far_future_jobs_stay_out_of_redis_until_due(stack: Stack, client: Any) -> None:
    job = await submit(client, "sleep", {"seconds": 0}, scheduled_at="9999-12-31T00:00:00Z")
    r = aioredis.from_url(stack.settings.require_redis_url())
    try:
        assert await r.exists(f"arq:job:{job['id']}:0") == 0
        assert await r.zscore(stack.settings.queue_name, f"{job['id']}:0") is None
    finally:
        await r.aclose()
    assert (await client.post(f"/jobs/{job['id']}/cancel")).status_code == 202


async def test_a_job_due_within_the_horizon_is_enqueued_by_reconcile(isolated: Any) -> None:
    async with isolated(workers=1, queue_horizon_seconds=2) as stack, await stack.client() as client:
        soon = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
        job = await submit(client, "sleep", {"seconds": 0}, scheduled_at=soon)
        done = await wait_for(client, job["id"], {"completed"}, timeout=20)
        assert datetime.fromisoformat(done["started_at"]) >= datetime.fromisoformat(soon)


async def test_a_long_run_is_never_picked_up_twice(isolated: Any) -> None:
    """arq leaves a running delivery in the queue; its in-progress marker must outlive the run."""
    async with isolated(workers=1) as stack, await stack.client() as client:
        job = await submit(client, "sleep", {"seconds": 8})  # the marker alone lasts 5 s here
        await wait_for(client, job["id"], {"completed"}, timeout=30)
        logs = "\n".join(read_log(w.log_path) for w in stack.workers)
        assert "KeyError" not in logs and "run_job failed" not in logs, logs[-3000:]
        assert [r.outcome for r in await runs_of(stack, job["id"])] == ["completed"]
