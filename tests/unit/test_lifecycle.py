"""The lifecycle table and the decision for an ended run, case by case (pure logic)."""

from __future__ import annotations

import random
from itertools import product

import pytest

from backend.domain.enums import JobStatus, RunOutcome
from backend.domain.errors import JobStateConflict
from backend.domain.lifecycle import (
    CANCELLED_BY_REQUEST,
    TRANSITIONS,
    WORKER_LOST,
    Ending,
    Event,
    RunState,
    decide,
    next_status,
    sources,
    succeeded,
)
from backend.domain.retry import RetryPolicy, backoff_ceiling

S = JobStatus
POLICY = RetryPolicy(base_s=1.0, cap_s=300.0)

ALLOWED = [
    (S.PENDING, Event.CLAIM, S.RUNNING),
    (S.RETRYING, Event.CLAIM, S.RUNNING),
    (S.RUNNING, Event.COMPLETE, S.COMPLETED),
    (S.RUNNING, Event.RETRY, S.RETRYING),
    (S.RUNNING, Event.FAIL, S.FAILED),
    (S.RUNNING, Event.ABORT, S.CANCELLED),
    (S.RUNNING, Event.HAND_BACK, S.RETRYING),
    (S.PENDING, Event.CANCEL, S.CANCELLED),
    (S.RETRYING, Event.CANCEL, S.CANCELLED),
    (S.RUNNING, Event.CANCEL, S.RUNNING),
    (S.BLOCKED, Event.CANCEL, S.CANCELLED),
    (S.BLOCKED, Event.UNBLOCK, S.PENDING),
    (S.BLOCKED, Event.PARENT_ENDED, S.CANCELLED),
    (S.FAILED, Event.REQUEUE, S.PENDING),
    (S.CANCELLED, Event.REQUEUE, S.PENDING),
]
ALLOWED_PAIRS = {(status, event) for status, event, _ in ALLOWED}
REFUSED = [pair for pair in product(JobStatus, Event) if pair not in ALLOWED_PAIRS]


@pytest.mark.parametrize(("status", "event", "after"), ALLOWED)
def test_allowed_transition(status: JobStatus, event: Event, after: JobStatus) -> None:
    assert next_status(status, event) is after


@pytest.mark.parametrize(("status", "event"), REFUSED)
def test_every_other_transition_is_refused(status: JobStatus, event: Event) -> None:
    with pytest.raises(JobStateConflict) as refused:
        next_status(status, event)
    assert str(status) in str(refused.value)


def test_the_table_is_exactly_the_documented_one() -> None:
    assert {(s, e): a for s, e, a in ALLOWED} == TRANSITIONS


@pytest.mark.parametrize("terminal", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_terminal_statuses_leave_only_by_a_manual_requeue(terminal: JobStatus) -> None:
    assert {e for (s, e) in TRANSITIONS if s is terminal} <= {Event.REQUEUE}


def test_sources() -> None:
    assert sources(Event.CLAIM) == {S.PENDING, S.RETRYING}
    assert sources(Event.CANCEL) == {S.BLOCKED, S.PENDING, S.RETRYING, S.RUNNING}
    assert sources(Event.REQUEUE) == {S.FAILED, S.CANCELLED}
    assert sources(Event.COMPLETE) == {S.RUNNING}


def test_refusal_messages_name_what_is_allowed() -> None:
    with pytest.raises(JobStateConflict, match="only blocked, pending, retrying or running jobs cancel"):
        next_status(S.COMPLETED, Event.CANCEL)
    with pytest.raises(JobStateConflict, match="only failed or cancelled jobs can be retried"):
        next_status(S.RUNNING, Event.REQUEUE)


def test_success_completes_with_its_result() -> None:
    end = succeeded({"value": 3}, {"key": "k"})
    assert (end.status, end.outcome, end.result, end.result_file) == (
        S.COMPLETED,
        RunOutcome.COMPLETED,
        {"value": 3},
        {"key": "k"},
    )
    assert end.error is None and end.retry_in_s is None and not end.refund_attempt


@pytest.mark.parametrize("attempt", [1, 2, 4])
def test_error_with_attempts_left_retries_after_backoff(attempt: int) -> None:
    end = decide(Ending.ERROR, RunState(attempt, 5), POLICY, error="boom", rng=random.Random(7))
    assert (end.event, end.status, end.outcome, end.error) == (
        Event.RETRY,
        S.RETRYING,
        RunOutcome.RETRY,
        "boom",
    )
    assert end.retry_in_s is not None and 0 <= end.retry_in_s <= backoff_ceiling(attempt, 1.0, 300.0)
    assert not end.refund_attempt


@pytest.mark.parametrize(("attempt", "max_attempts"), [(3, 3), (5, 3), (1, 1)])
def test_error_on_the_last_attempt_fails(attempt: int, max_attempts: int) -> None:
    end = decide(Ending.ERROR, RunState(attempt, max_attempts), POLICY, error="boom")
    assert (end.status, end.outcome, end.error, end.retry_in_s) == (S.FAILED, RunOutcome.FAILED, "boom", None)


def test_permanent_error_fails_at_once_whatever_attempts_are_left() -> None:
    end = decide(Ending.PERMANENT_ERROR, RunState(1, 20), POLICY, error="bad input")
    assert (end.status, end.outcome, end.error) == (S.FAILED, RunOutcome.FAILED, "bad input")


def test_cancel_request_aborts_the_run() -> None:
    end = decide(Ending.CANCEL_REQUESTED, RunState(1, 3), POLICY)
    assert (end.status, end.outcome, end.error) == (S.CANCELLED, RunOutcome.CANCELLED, CANCELLED_BY_REQUEST)


def test_shutdown_hands_back_and_refunds_the_attempt() -> None:
    end = decide(Ending.SHUTDOWN, RunState(3, 3), POLICY)
    assert (end.status, end.outcome, end.refund_attempt, end.retry_in_s) == (
        S.RETRYING,
        RunOutcome.HANDED_BACK,
        True,
        0.0,
    )


def test_lapsed_lease_retries_at_once_while_attempts_are_left() -> None:
    end = decide(Ending.LEASE_LAPSED, RunState(1, 3), POLICY)
    assert (end.status, end.outcome, end.error, end.retry_in_s) == (
        S.RETRYING,
        RunOutcome.LOST,
        WORKER_LOST,
        0.0,
    )


def test_lapsed_lease_on_the_last_attempt_fails() -> None:
    end = decide(Ending.LEASE_LAPSED, RunState(3, 3), POLICY)
    assert (end.status, end.outcome, end.error) == (S.FAILED, RunOutcome.LOST, WORKER_LOST)


def test_lapsed_lease_of_a_job_asked_to_cancel_ends_cancelled() -> None:
    end = decide(Ending.LEASE_LAPSED, RunState(1, 3, cancel_requested=True), POLICY)
    assert (end.status, end.outcome, end.error) == (S.CANCELLED, RunOutcome.LOST, CANCELLED_BY_REQUEST)


@pytest.mark.parametrize("ending", list(Ending))
def test_every_ending_leaves_running_by_an_allowed_transition(ending: Ending) -> None:
    for run in (RunState(1, 3), RunState(3, 3), RunState(1, 3, cancel_requested=True)):
        end = decide(ending, run, POLICY, error="e")
        assert TRANSITIONS[(S.RUNNING, end.event)] is end.status


def test_blocked_is_not_terminal_and_leaves_only_to_pending_or_cancelled() -> None:
    assert not S.BLOCKED.is_terminal
    assert {a for (s, _), a in TRANSITIONS.items() if s is S.BLOCKED} == {S.PENDING, S.CANCELLED}
    assert sources(Event.UNBLOCK) == sources(Event.PARENT_ENDED) == {S.BLOCKED}
