"""Running one delivery of a job: claim, heartbeat, handler, then the lifecycle's decision, written fenced."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from pydantic import ValidationError

from backend.domain.errors import PermanentJobError
from backend.domain.job_types import SPECS
from backend.domain.lifecycle import Ending, RunEnd, RunState, decide, succeeded
from backend.domain.records import Claim
from backend.repo.jobs import JobRepository
from backend.resources import Resources
from backend.services.runs import record_ends, requeue_retries
from worker.context import JobContext, Outcome, Progress
from worker.tasks import HANDLERS

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


def describe(exc: BaseException) -> str:
    """A one-line error message for the job row."""
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return message[:MAX_ERROR_CHARS]


class Stop:
    """Why the heartbeat stopped the handler, if it did: a cancel request or a lost claim."""

    def __init__(self) -> None:
        self.ending: Ending | None = None


class Runtime:
    """One worker process's shared clients and the run loop for a single delivery."""

    def __init__(self, resources: Resources, worker_id: str) -> None:
        self.res = resources
        self.settings = resources.settings
        self.jobs = JobRepository(resources.pool)
        self.heartbeat_interval = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        self.worker_id = worker_id

    async def run(self, job_id: uuid.UUID) -> None:
        """Run the job if this delivery wins the claim; a duplicate or late delivery is a no-op."""
        claim = await self.jobs.claim(job_id, self.worker_id, self.settings.lease_seconds)
        if claim is None:
            log.debug("delivery skipped: not claimable", extra={"job_id": str(job_id)})
            return
        if claim.type not in HANDLERS:
            await self._end(
                claim, self._decide(claim, Ending.PERMANENT_ERROR, f"unknown job type {claim.type!r}")
            )
            return
        await self._run_claimed(claim)

    def timeout_of(self, job_type: str) -> float:
        """The type's timeout, unless TASK_TIMEOUTS overrides it."""
        return self.settings.task_timeouts.get(job_type, SPECS[job_type].timeout_s)

    async def _run_claimed(self, claim: Claim) -> None:
        ctx = JobContext(
            claim.job_id,
            claim.owner_id,
            claim.attempt,
            self.res.storage,
            self.res.pool,
            Progress(),
            claim.token.hex[:12],
        )
        stop = Stop()
        handler = asyncio.create_task(self._execute(ctx, claim))
        heartbeat: asyncio.Task[None] | None = None
        try:
            # Most jobs end before a heartbeat is due: they never pay for a heartbeat task.
            done, _ = await asyncio.wait({handler}, timeout=self.heartbeat_interval)
            if not done:
                heartbeat = asyncio.create_task(self._heartbeat(claim, ctx.progress, handler, stop))
            outcome = await handler
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                handler.cancel()
                await asyncio.shield(self._end(claim, self._decide(claim, Ending.SHUTDOWN)))
                log.info("job handed back on shutdown", extra={"job_id": str(claim.job_id)})
                raise
            await self._stopped(claim, stop)
        except (PermanentJobError, ValidationError) as exc:
            await self._end(claim, self._decide(claim, Ending.PERMANENT_ERROR, describe(exc)))
        except TimeoutError:
            error = f"TimeoutError: attempt exceeded {self.timeout_of(claim.type):g}s"
            await self._failed_attempt(claim, error)
        except Exception as exc:  # any handler failure is one failed attempt
            await self._failed_attempt(claim, describe(exc))
        else:
            await self._complete(claim, outcome)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    async def _execute(self, ctx: JobContext, claim: Claim) -> Outcome:
        payload = SPECS[claim.type].payload.model_validate(claim.payload)
        async with asyncio.timeout(self.timeout_of(claim.type)):
            return await HANDLERS[claim.type](ctx, payload)

    async def _heartbeat(
        self, claim: Claim, progress: Progress, handler: asyncio.Task[Any], stop: Stop
    ) -> None:
        while True:
            try:
                cancel = await self.jobs.heartbeat(claim, self.settings.lease_seconds, progress.value)
            except Exception as exc:  # keep running; if the lease lapses, reconcile decides
                log.warning("heartbeat failed", extra={"job_id": str(claim.job_id), "error": describe(exc)})
            else:
                if cancel is None or cancel:
                    stop.ending = Ending.CANCEL_REQUESTED if cancel else Ending.LEASE_LAPSED
                    handler.cancel()
                    return
            await asyncio.sleep(self.heartbeat_interval)

    async def _stopped(self, claim: Claim, stop: Stop) -> None:
        if stop.ending is Ending.CANCEL_REQUESTED:
            await self._end(claim, self._decide(claim, Ending.CANCEL_REQUESTED))
            log.info("job cancelled while running", extra={"job_id": str(claim.job_id)})
        else:  # the claim was lost: whoever holds the job now decides, not this run
            log.warning("claim lost; run abandoned", extra={"job_id": str(claim.job_id)})

    async def _complete(self, claim: Claim, outcome: Outcome) -> None:
        file = outcome.file
        completed = await self._end(claim, succeeded(outcome.result, file.as_json() if file else None))
        if not completed:
            log.warning("completion discarded: claim lost", extra={"job_id": str(claim.job_id)})
        if file is None:
            return
        if completed:  # earlier runs' files go; a stale run's file (its claim lost) deletes itself
            await self.res.storage.prune(claim.job_id, keep=file.key)
        else:
            await self.res.storage.delete(file.key)

    async def _failed_attempt(self, claim: Claim, error: str) -> None:
        end = self._decide(claim, Ending.ERROR, error)
        extra = {"job_id": str(claim.job_id), "attempt": claim.attempt, "error": error, "status": end.status}
        log.info("attempt failed", extra={**extra, "retry_in_s": end.retry_in_s})
        await self._end(claim, end)

    def _decide(self, claim: Claim, ending: Ending, error: str | None = None) -> RunEnd:
        run = RunState(claim.attempt, claim.max_attempts)
        return decide(ending, run, self.res.retry_policy, error=error)

    async def _end(self, claim: Claim, end: RunEnd) -> bool:
        """Write the decision, fenced by the claim; re-enqueue a retry. False if the claim was lost."""
        ended = await record_ends(self.res.pool, [(claim.job_id, claim.token, end)])
        await requeue_retries(self.res.queue, ended)
        return bool(ended)
