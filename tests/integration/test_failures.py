"""Failures end the attempt at once with a message safe for clients; details stay in the worker log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.integration.test_worker import runs_of
from tests.utils import db
from tests.utils.stack import Stack, read_log, submit, wait_for
from worker.context import Outcome
from worker.runtime import RESULT_NOT_STORABLE, Runtime


async def test_a_result_that_cannot_be_stored_fails_the_attempt_at_once(isolated: Any) -> None:
    """Whatever a handler returns, a result PostgreSQL refuses ends the run as failed, not stuck running."""
    async with isolated(workers=0) as stack, await stack.client() as client:
        job = await submit(client, "square_sum", {"data": [1]}, max_attempts=3)
        async with db.resources(stack.settings) as res:
            runtime = Runtime(res, "test-worker")
            claim = await runtime.jobs.claim(uuid.UUID(job["id"]), "test-worker", 10, 0)
            assert claim is not None
            await runtime._complete(claim, Outcome(result={"value": float("nan")}))
        done = await wait_for(client, job["id"], {"failed", "completed"}, timeout=5)
        assert done["status"] == "failed" and done["attempts"] == 1
        assert done["error"] == RESULT_NOT_STORABLE
        assert [r.outcome for r in await runs_of(stack, job["id"])] == ["failed"]


async def test_numbers_beyond_the_cap_are_refused_at_the_door(client: httpx.AsyncClient) -> None:
    for number in (10**1500, -(10**19), 1e200):
        r = await client.post("/jobs", json={"type": "cube_sum", "payload": {"data": [1, number]}})
        assert r.status_code == 422, number
        assert "data" in r.json()["detail"][0]["loc"]


async def test_an_unexpected_error_never_reaches_the_client(stack: Stack, client: httpx.AsyncClient) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    job = await submit(client, "csv_report", {"rows": 10}, scheduled_at=soon, max_attempts=1)
    # The job's folder cannot be made (a file is in the way): an OSError whose text names a server path.
    blocker = stack.settings.resolved_results_dir / job["id"]
    await asyncio.to_thread(blocker.write_text, "in the way")
    done: dict[str, Any] = await wait_for(client, job["id"], {"failed"}, timeout=30)
    assert done["error"].endswith("(details in the worker log)"), done["error"]
    assert str(stack.settings.resolved_results_dir) not in done["error"] and "Errno" not in done["error"]
    logs = "\n".join(read_log(w.log_path) for w in stack.workers)
    assert job["id"] in logs and "handler failed" in logs
