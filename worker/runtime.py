"""Running one delivery of a job: claim, heartbeat, handler, and a fenced write of the outcome."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.config import Settings
from backend.domain.errors import PermanentJobError
from backend.repo.runs import Claim, RunRepository
from backend.services.dispatch import Dispatcher
from backend.services.retry import backoff_delay
from backend.services.storage import Storage
from worker.context import JobContext, Outcome, Progress
from worker.tasks import TASKS, TaskSpec

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


@dataclass
class RunState:
    """Why the heartbeat stopped the handler, if it did."""

    reason: str | None = None


def describe(exc: BaseException) -> str:
    """A one-line error message for the job row."""
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return message[:MAX_ERROR_CHARS]


class Runtime:
    """One worker process's shared clients and the run loop for a single delivery."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        dispatcher: Dispatcher,
        worker_id: str,
        pool: asyncpg.Pool,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.pool = pool  # raw asyncpg for the per-run statements (see backend/repo/runs.py)
        self.heartbeat_interval = min(settings.heartbeat_seconds, settings.lease_seconds / 3)
        self.storage = storage
        self.dispatcher = dispatcher
        self.worker_id = worker_id

    async def run(self, job_id: uuid.UUID) -> None:
        """Run the job if this delivery wins the claim; a duplicate or late delivery is a no-op."""
        claim = await self._claim(job_id)
        if claim is None:
            log.debug("delivery skipped: not claimable", extra={"job_id": str(job_id)})
            return
        spec = TASKS.get(claim.type)
        if spec is None:
            await self._fail(claim, f"unknown job type {claim.type!r}")
            return
        await self._run_claimed(claim, spec)

    async def _claim(self, job_id: uuid.UUID) -> Claim | None:
        async with self.pool.acquire() as conn:
            return await RunRepository(conn).claim(job_id, self.worker_id, self.settings.lease_seconds)

    async def _run_claimed(self, claim: Claim, spec: TaskSpec) -> None:
        ctx = JobContext(
            claim.job_id,
            claim.owner_id,
            claim.attempt,
            self.storage,
            self.sessions,
            Progress(),
            claim.token.hex[:12],
        )
        state = RunState()
        handler = asyncio.create_task(self._execute(ctx, spec, claim))
        heartbeat: asyncio.Task[None] | None = None
        try:
            # Most jobs end before a heartbeat is due: they never pay for a heartbeat task.
            done, _ = await asyncio.wait({handler}, timeout=self.heartbeat_interval)
            if not done:
                heartbeat = asyncio.create_task(self._heartbeat(claim, ctx.progress, handler, state))
            outcome = await handler
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                handler.cancel()
                await asyncio.shield(self._hand_back(claim))  # shutdown: give the job back, unspent
                raise
            await self._stopped(claim, state)
        except (PermanentJobError, ValidationError) as exc:
            await self._fail(claim, describe(exc))
        except TimeoutError:
            limit = self.timeout_of(claim.type, spec)
            await self._failed_attempt(claim, f"TimeoutError: attempt exceeded {limit:g}s")
        except Exception as exc:  # any handler failure is one failed attempt
            await self._failed_attempt(claim, describe(exc))
        else:
            await self._complete(claim, outcome)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    async def _execute(self, ctx: JobContext, spec: TaskSpec, claim: Claim) -> Outcome:
        payload = spec.payload_model.model_validate(claim.payload)
        async with asyncio.timeout(self.timeout_of(claim.type, spec)):
            return await spec.handler(ctx, payload)

    def timeout_of(self, job_type: str, spec: TaskSpec) -> float:
        """The type's timeout, unless TASK_TIMEOUTS overrides it."""
        return self.settings.task_timeouts.get(job_type, spec.timeout_s)

    async def _heartbeat(
        self, claim: Claim, progress: Progress, handler: asyncio.Task[Any], state: RunState
    ) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    cancel = await RunRepository(conn).heartbeat(
                        claim, self.settings.lease_seconds, progress.value
                    )
            except Exception as exc:  # keep running; if the lease lapses, reconcile decides
                log.warning("heartbeat failed", extra={"job_id": str(claim.job_id), "error": describe(exc)})
            else:
                if cancel is None or cancel:
                    state.reason = "lost" if cancel is None else "cancel"
                    handler.cancel()
                    return
            await asyncio.sleep(self.heartbeat_interval)

    async def _stopped(self, claim: Claim, state: RunState) -> None:
        if state.reason == "cancel":
            await self._write(lambda r: r.mark_cancelled(claim))
            log.info("job cancelled while running", extra={"job_id": str(claim.job_id)})
        else:
            log.warning("claim lost; run abandoned", extra={"job_id": str(claim.job_id)})

    async def _complete(self, claim: Claim, outcome: Outcome) -> None:
        result = outcome.result
        file = outcome.file.as_json() if outcome.file else None
        completed = await self._write(lambda r: r.complete(claim, result, file))
        if not completed:
            log.warning("completion discarded: claim lost", extra={"job_id": str(claim.job_id)})
        if outcome.file is None:
            return
        if completed:  # earlier runs' files go; a stale run's file (its claim lost) deletes itself
            await self.storage.prune(claim.job_id, keep=outcome.file.key)
        else:
            await self.storage.delete(outcome.file.key)

    async def _failed_attempt(self, claim: Claim, error: str) -> None:
        extra = {"job_id": str(claim.job_id), "attempt": claim.attempt, "error": error}
        if claim.attempt >= claim.max_attempts:
            log.info("job failed: attempts spent", extra=extra)
            await self._fail(claim, error)
            return
        s = self.settings
        delay = backoff_delay(claim.attempt, s.retry_base_seconds, s.retry_cap_seconds)
        row = await self._write(lambda r: r.schedule_retry(claim, error, delay))
        log.info("attempt failed; retrying", extra={**extra, "delay_s": round(delay, 3)})
        if row is not None:
            await self.dispatcher.enqueue(claim.job_id, row["attempts"], row["scheduled_at"])

    async def _fail(self, claim: Claim, error: str) -> None:
        await self._write(lambda r: r.fail(claim, error))

    async def _hand_back(self, claim: Claim) -> None:
        row = await self._write(lambda r: r.hand_back(claim))
        log.info("job handed back on shutdown", extra={"job_id": str(claim.job_id)})
        if row is not None:
            await self.dispatcher.enqueue(claim.job_id, row["attempts"], row["scheduled_at"])

    async def _write(self, op: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await op(RunRepository(conn))
