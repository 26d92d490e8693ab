"""Running one delivery of a job: claim, heartbeat, handler, then the lifecycle's decision, written fenced."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from backend.core.logging import log_context
from backend.core.tracing import trace_id_of
from backend.domain.errors import JobFailure, PermanentJobError
from backend.domain.job_types import SPECS
from backend.domain.jobs import MAX_ERROR_CHARS
from backend.domain.lifecycle import Ending, RunEnd, RunState, decide, succeeded
from backend.domain.records import Claim
from backend.repo.jobs import JobRepository
from backend.resources import Resources
from backend.services.runs import UNSTORABLE, RunWriter
from worker.context import JobContext, Outcome, Progress
from worker.tasks import HANDLERS

if TYPE_CHECKING:
    from backend.core.otel import Tracer

log = logging.getLogger(__name__)


RESULT_NOT_STORABLE = "ResultNotStorable: the result is not valid JSON for storage (e.g. NaN or infinity)"


def describe(exc: BaseException, job_type: str) -> str:
    """The job row's `error`: safe for clients to read.

    A handler's own `JobFailure` message is meant for them, and a payload that no longer validates names
    its fields; anything else is only its exception type (the details are in the worker log).
    """
    if isinstance(exc, JobFailure):
        message = f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, ValidationError):
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "payload" for e in exc.errors())
        message = f"ValidationError: the stored payload does not match the {job_type} schema ({fields})"
    else:
        message = f"{type(exc).__name__} (details in the worker log)"
    return message[:MAX_ERROR_CHARS]


class Stop:
    """Why the handler was stopped, if it was: the heartbeat's cancel request or lost claim, or the
    type's timeout."""

    def __init__(self) -> None:
        self.ending: Ending | None = None
        self.timed_out = False


class Runtime:
    """One worker process's shared clients and the run loop for a single delivery."""

    def __init__(self, resources: Resources, worker_id: str, tracer: Tracer | None = None) -> None:
        self.res = resources
        self.tracer = tracer
        self.settings = resources.settings
        self.jobs = JobRepository(resources.pool)
        self.heartbeat_interval = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        self.worker_id = worker_id
        s = self.settings
        caps = (s.max_running_jobs_per_key, s.type_concurrency)
        self.writer = RunWriter(resources.pool, resources.queue, worker_id, s.lease_seconds, *caps)

    async def run(self, job_id: uuid.UUID, delivery: str) -> None:
        """Run the job if this delivery wins the claim; a duplicate or late delivery is a no-op."""
        claim = await self._claim(job_id)
        if claim is None:
            log.debug("delivery skipped: not claimable", extra={"job_id": str(job_id)})
            return
        # Whatever is logged during the run (the handler's own lines too) names the job and its trace.
        with log_context(job_id=str(claim.job_id), trace_id=trace_id_of(claim.traceparent)):
            if self.tracer is None:
                await self._run(claim, delivery)
                return
            span = self.tracer.run_span(
                claim.job_id, claim.type, claim.attempt, self.worker_id, claim.traceparent
            )
            with span as trace_id, log_context(trace_id=trace_id):
                await self._run(claim, delivery)

    async def _claim(self, job_id: uuid.UUID) -> Claim | None:
        """The claim (group-committed with the other deliveries fetched with this one). Cancelled while
        the claim is in flight (a shutdown), the run it may have won is handed back at once."""
        claiming = asyncio.ensure_future(self.writer.claim(job_id))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            claim = await claiming
            if claim is not None:
                await self._end(claim, self._decide(claim, Ending.SHUTDOWN))
            raise

    async def _run(self, claim: Claim, delivery: str) -> None:
        if claim.type not in HANDLERS:
            await self._end(
                claim, self._decide(claim, Ending.PERMANENT_ERROR, f"unknown job type {claim.type!r}")
            )
            return
        await self._run_claimed(claim, delivery)

    def timeout_of(self, job_type: str) -> float:
        """The type's timeout, unless TASK_TIMEOUTS overrides it."""
        return self.settings.task_timeouts.get(job_type, SPECS[job_type].timeout_s)

    async def _run_claimed(self, claim: Claim, delivery: str) -> None:
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
        loop = asyncio.get_running_loop()
        handler = loop.create_task(self._execute(ctx, claim))
        # Two timers rather than asyncio.timeout and asyncio.wait (a tenth of their cost, per job): the
        # type's timeout, and the first heartbeat, which most jobs end before (they never start its task).
        deadline = loop.call_later(self.timeout_of(claim.type), self._expire, handler, stop)
        beats: list[asyncio.Task[None]] = []
        beat = self._heartbeat(claim, delivery, ctx.progress, handler, stop)
        first_beat = loop.call_later(self.heartbeat_interval, lambda: beats.append(loop.create_task(beat)))
        try:
            outcome = await handler
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                handler.cancel()
                await asyncio.shield(self._end(claim, self._decide(claim, Ending.SHUTDOWN)))
                log.info("job handed back on shutdown", extra={"job_id": str(claim.job_id)})
                raise
            if stop.timed_out:
                await self._timed_out(claim)
            else:
                await self._stopped(claim, stop)
        except (PermanentJobError, ValidationError) as exc:
            await self._end(claim, self._decide(claim, Ending.PERMANENT_ERROR, describe(exc, claim.type)))
        except TimeoutError:
            await self._timed_out(claim)
        except Exception as exc:  # any handler failure is one failed attempt
            if not isinstance(exc, JobFailure):
                log.exception("handler failed", extra={"job_id": str(claim.job_id), "attempt": claim.attempt})
            await self._failed_attempt(claim, describe(exc, claim.type))
        else:
            await self._complete(claim, outcome)
        finally:
            deadline.cancel()
            first_beat.cancel()
            if beats:
                beats[0].cancel()
            else:
                beat.close()  # never started

    @staticmethod
    def _expire(handler: asyncio.Task[Outcome], stop: Stop) -> None:
        if stop.ending is None:
            stop.timed_out = True
            handler.cancel()

    async def _timed_out(self, claim: Claim) -> None:
        await self._failed_attempt(claim, f"TimeoutError: attempt exceeded {self.timeout_of(claim.type):g}s")

    async def _execute(self, ctx: JobContext, claim: Claim) -> Outcome:
        payload = SPECS[claim.type].payload.model_validate(claim.payload)
        return await HANDLERS[claim.type](ctx, payload)

    async def _heartbeat(
        self, claim: Claim, delivery: str, progress: Progress, handler: asyncio.Task[Any], stop: Stop
    ) -> None:
        while True:
            await self.res.queue.keep_in_progress(delivery)
            try:
                cancel = await self.writer.heartbeat(claim, progress.value)
            except Exception as exc:  # keep running; if the lease lapses, reconcile decides
                extra = {"job_id": str(claim.job_id), "error": type(exc).__name__}
                log.warning("heartbeat failed", extra=extra)
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
        completed = await self._record_success(claim, outcome)
        if file is None:
            return
        if completed:  # earlier runs' files go; a stale run's file (its claim lost) deletes itself
            await self.res.storage.prune(claim.job_id, keep=file.key)
        else:
            await self.res.storage.delete(file.key)

    async def _record_success(self, claim: Claim, outcome: Outcome) -> bool:
        """Write the result; a result PostgreSQL refuses fails the job at once (a retry would repeat it)."""
        file = outcome.file.as_json() if outcome.file else None
        try:
            completed = await self._end(claim, succeeded(outcome.result, file))
        except UNSTORABLE:
            log.exception("result could not be stored", extra={"job_id": str(claim.job_id)})
            await self._end(claim, self._decide(claim, Ending.PERMANENT_ERROR, RESULT_NOT_STORABLE))
            return False
        if not completed:
            log.warning("completion discarded: claim lost", extra={"job_id": str(claim.job_id)})
        return completed

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
        if self.tracer is not None:
            self.tracer.run_ended(end.status.value, end.error)
        return await self.writer.end(claim, end)
