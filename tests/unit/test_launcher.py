"""The launcher's Supervisor: doubling restart delays, a fresh start after a stable run, stop on SIGTERM."""

from __future__ import annotations

import logging
import signal

import pytest

from backend.launcher import Backoff, ChildProcess, Supervisor

EXITS_AT_ONCE = ["sh", "-c", "exit 3"]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _restart_after_crash(supervisor: Supervisor, child: ChildProcess, clock: FakeClock) -> float:
    """Let the child's exit be noticed and its back-off pass; return the delay the supervisor chose."""
    child.wait(10)
    before = child.popen
    supervisor.check()
    assert child.popen is before and set(supervisor.pending_restarts()) == {"crasher"}
    delay = supervisor.pending_restarts()["crasher"]
    clock.now += delay / 2
    supervisor.check()
    assert child.popen is before, "restarted before its back-off was over"
    clock.now += delay / 2
    supervisor.check()
    assert child.popen is not before, "not restarted once its back-off was over"
    return delay


def test_a_crashing_child_is_restarted_with_doubling_delays_up_to_the_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="backend.launcher")
    clock = FakeClock()
    child = ChildProcess(EXITS_AT_ONCE)
    supervisor = Supervisor({"crasher": child}, backoff=Backoff(0.5, cap=2.0, stable_after=60), clock=clock)
    supervisor.start()
    try:
        delays = [_restart_after_crash(supervisor, child, clock) for _ in range(5)]
    finally:
        supervisor.stop()
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    crashes = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.child, r.exit_code, r.delay_seconds) for r in crashes] == [  # type: ignore[attr-defined]
        ("crasher", 3, d) for d in delays
    ]
    assert sum("restarted as pid" in r.getMessage() for r in caplog.records) == 5


def test_back_off_starts_over_after_the_child_stayed_up() -> None:
    clock = FakeClock()
    child = ChildProcess(EXITS_AT_ONCE)
    supervisor = Supervisor({"crasher": child}, backoff=Backoff(0.5, cap=30, stable_after=10), clock=clock)
    supervisor.start()
    try:
        assert [_restart_after_crash(supervisor, child, clock) for _ in range(3)] == [0.5, 1.0, 2.0]
        clock.now += 10  # this run "stayed up" ten seconds before it exited
        assert _restart_after_crash(supervisor, child, clock) == 0.5
    finally:
        supervisor.stop()


def test_stop_ends_every_child_and_nothing_restarts_after() -> None:
    clock = FakeClock()
    children = {"a": ChildProcess(["sleep", "60"]), "b": ChildProcess(["sleep", "60"])}
    supervisor = Supervisor(children, clock=clock)
    supervisor.start()
    supervisor.stop()
    assert [c.returncode for c in children.values()] == [-signal.SIGTERM, -signal.SIGTERM]
    clock.now += 3600
    supervisor.check()
    assert not any(c.alive() for c in children.values())


def test_run_restarts_until_sigterm_then_stops_and_restores_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="backend.launcher")
    before = signal.getsignal(signal.SIGTERM)
    # The stopper signals only once it runs, i.e. after `run` installed its handlers; `exec` so that
    # the SIGTERM of the stop reaches `sleep` itself and leaves no orphan behind.
    stopper = ChildProcess(["sh", "-c", 'sleep 1; kill -TERM "$PPID"; exec sleep 60'])
    crasher = ChildProcess(EXITS_AT_ONCE)
    supervisor = Supervisor(
        {"crasher": crasher, "stopper": stopper}, backoff=Backoff(0.01, cap=0.05), poll_seconds=0.01
    )
    supervisor.run()
    assert not crasher.alive() and stopper.returncode == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    restarts = [r for r in caplog.records if "restarted as pid" in r.getMessage()]
    assert restarts and all(r.child == "crasher" for r in restarts)  # type: ignore[attr-defined]
