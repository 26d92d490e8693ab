"""The job lifecycle, decided in one place: the transition table and the decision for an ended run.

Pure: no I/O. Every writer (the claim, a run's end, lease recovery, shutdown hand-back, cancel, manual
retry) asks this module what the next status is, and the repository applies the answer with one
statement fenced by the expected status (and, after a claim, by the claim token).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from backend.domain.enums import JobStatus, RunOutcome
from backend.domain.errors import JobStateConflict
from backend.domain.retry import RetryPolicy

S = JobStatus


class Event(StrEnum):
    """Something that happens to a job."""

    CLAIM = "claim"  # a worker takes a waiting, due job for one run
    COMPLETE = "complete"  # the run succeeded
    RETRY = "retry"  # the run failed and attempts are left
    FAIL = "fail"  # the run failed for good
    ABORT = "abort"  # the run stopped because cancellation was requested
    HAND_BACK = "hand_back"  # the worker shut down mid-run: back to the queue, attempt refunded
    CANCEL = "cancel"  # a client asks to cancel
    REQUEUE = "requeue"  # a client asks to run an ended job again
    UNBLOCK = "unblock"  # the last job it depends on completed
    PARENT_ENDED = "parent_ended"  # a job it depends on ended failed or cancelled


TRANSITIONS: dict[tuple[JobStatus, Event], JobStatus] = {
    (S.PENDING, Event.CLAIM): S.RUNNING,
    (S.RETRYING, Event.CLAIM): S.RUNNING,
    (S.RUNNING, Event.COMPLETE): S.COMPLETED,
    (S.RUNNING, Event.RETRY): S.RETRYING,
    (S.RUNNING, Event.FAIL): S.FAILED,
    (S.RUNNING, Event.ABORT): S.CANCELLED,
    (S.RUNNING, Event.HAND_BACK): S.RETRYING,
    (S.PENDING, Event.CANCEL): S.CANCELLED,
    (S.RETRYING, Event.CANCEL): S.CANCELLED,
    # A running job stays running: its worker sees the request at the next heartbeat and ABORTs.
    (S.RUNNING, Event.CANCEL): S.RUNNING,
    (S.BLOCKED, Event.CANCEL): S.CANCELLED,
    # Applied in the database, in the transaction of the parent's end (migration 0015, jp_on_parent_end).
    (S.BLOCKED, Event.UNBLOCK): S.PENDING,
    (S.BLOCKED, Event.PARENT_ENDED): S.CANCELLED,
    (S.FAILED, Event.REQUEUE): S.PENDING,
    (S.CANCELLED, Event.REQUEUE): S.PENDING,
}

REFUSALS: dict[Event, str] = {
    Event.CANCEL: "only blocked, pending, retrying or running jobs cancel",
    Event.REQUEUE: "only failed or cancelled jobs can be retried",
}

CANCELLED_BY_REQUEST = "cancelled by request"
WORKER_LOST = "worker lost: lease expired"


def parent_ended_error(parent_id: object, parent_status: str) -> str:
    """A blocked job's `error` when a job it depends on ended without completing (the trigger of
    migration 0015 spells the same text)."""
    return f"dependency {parent_id} {parent_status}"


def next_status(status: JobStatus, event: Event) -> JobStatus:
    """The status after `event`, or JobStateConflict if the table has no such transition."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        reason = REFUSALS.get(event, f"{event} is not allowed")
        raise JobStateConflict(f"Job is {status}; {reason}") from None


def sources(event: Event) -> frozenset[JobStatus]:
    """Every status from which `event` is allowed."""
    return frozenset(status for status, e in TRANSITIONS if e is event)


class Ending(StrEnum):
    """How a claimed run stopped, before the lifecycle decides what it means for the job."""

    SUCCEEDED = "succeeded"
    ERROR = "error"  # the handler raised: one failed attempt
    PERMANENT_ERROR = "permanent_error"  # bad input found late: retrying cannot help
    CANCEL_REQUESTED = "cancel_requested"  # the heartbeat saw a cancel request and stopped it
    SHUTDOWN = "shutdown"  # the worker is stopping
    LEASE_LAPSED = "lease_lapsed"  # the worker vanished; found by reconcile


@dataclass(frozen=True)
class RunEnd:
    """The decision for an ended run: the job's next status and what the run row records."""

    event: Event
    status: JobStatus
    outcome: RunOutcome
    error: str | None = None
    retry_in_s: float | None = None  # set: the job is due again after this many seconds
    refund_attempt: bool = False
    result: Any = None
    result_file: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunState:
    """What the decision needs to know about the run's job."""

    attempt: int
    max_attempts: int
    cancel_requested: bool = False


def _end(event: Event, outcome: RunOutcome, **fields: Any) -> RunEnd:
    return RunEnd(event, next_status(S.RUNNING, event), outcome, **fields)


def _failed(run: RunState, error: str, policy: RetryPolicy, rng: random.Random | None, wait: bool) -> RunEnd:
    if run.attempt >= run.max_attempts:
        return _end(Event.FAIL, RunOutcome.FAILED, error=error)
    delay = policy.delay(run.attempt, rng) if wait else 0.0
    return _end(Event.RETRY, RunOutcome.RETRY, error=error, retry_in_s=delay)


def decide(
    ending: Ending,
    run: RunState,
    policy: RetryPolicy,
    *,
    error: str | None = None,
    rng: random.Random | None = None,
) -> RunEnd:
    """What an ended run means for its job: completed, retry after a delay, failed, cancelled or handed back.

    A success is not decided here (`succeeded` carries the result); a lapsed lease retries at once (the
    run was lost, not wrong), unless cancellation was requested meanwhile.
    """
    match ending:
        case Ending.SUCCEEDED:
            return succeeded(None, None)
        case Ending.PERMANENT_ERROR:
            return _end(Event.FAIL, RunOutcome.FAILED, error=error)
        case Ending.ERROR:
            return _failed(run, error or "error", policy, rng, wait=True)
        case Ending.CANCEL_REQUESTED:
            return _end(Event.ABORT, RunOutcome.CANCELLED, error=CANCELLED_BY_REQUEST)
        case Ending.SHUTDOWN:
            return _end(Event.HAND_BACK, RunOutcome.HANDED_BACK, retry_in_s=0.0, refund_attempt=True)
        case Ending.LEASE_LAPSED:
            if run.cancel_requested:
                return _end(Event.ABORT, RunOutcome.LOST, error=CANCELLED_BY_REQUEST)
            lost = _failed(run, WORKER_LOST, policy, rng, wait=False)
            return RunEnd(lost.event, lost.status, RunOutcome.LOST, lost.error, lost.retry_in_s)


def succeeded(result: Any, result_file: dict[str, Any] | None) -> RunEnd:
    """The decision for a run that produced `result` (and maybe a file)."""
    return _end(Event.COMPLETE, RunOutcome.COMPLETED, result=result, result_file=result_file)
