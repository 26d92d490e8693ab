"""Start, watch and stop platform processes (`jobplatform api`, `jobplatform worker`), alone or supervised.

`ChildProcess` is one child; `Supervisor` keeps a named set of them running, restarting any that exits
with exponential back-off until it is told to stop (SIGINT, SIGTERM or `request_stop`). Standard library
only: `jobplatform dev`, the tests and the benchmarks all start processes through this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Self

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def platform_command(*args: str) -> list[str]:
    """`jobplatform <args>` run by this interpreter (no need for the console script on PATH)."""
    return [sys.executable, "-m", "backend.cli", *args]


def export_metrics_dir(folder: Path) -> Path:
    """Create the Prometheus multiprocess folder and name it in this process's environment, which its
    children inherit. prometheus-client reads it from there once, when it is imported: call this first."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[METRICS_DIR_ENV] = str(folder.resolve())
    return folder


@contextlib.contextmanager
def metrics_dir(configured: Path | None, *, needed: bool) -> Iterator[Path | None]:
    """The metrics folder of the processes about to start: the configured one (kept: its counters must
    outlive any process), else, when several processes must share one (`needed`), a temporary one removed
    when the block ends; else none (a single process counts in memory)."""
    if configured is not None:
        yield export_metrics_dir(configured)
        return
    if not needed:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="jobplatform-metrics-"))
    try:
        yield export_metrics_dir(folder)
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


class ChildProcess:
    """One child process, started on demand (and again after it exits).

    Its output is appended to `log_path`, or shared with this process's stdout/stderr when that is None.
    With `own_group`, the child gets its own process group, so a Ctrl-C in the terminal reaches only the
    parent, which then stops the child itself (one SIGTERM, not SIGINT followed by SIGTERM).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        own_group: bool = False,
    ) -> None:
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_path = log_path
        self.own_group = own_group
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Spawn the process and return at once; refuses while the previous one still runs."""
        if self.alive():
            raise RuntimeError(f"{self.args} is already running as pid {self.pid}")
        if self.log_path is None:
            self.popen = self._spawn(None)
        else:
            with self.log_path.open("ab") as out:
                self.popen = self._spawn(out)
        return self

    def _spawn(self, out: IO[bytes] | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=None if out is None else subprocess.STDOUT,
            process_group=0 if self.own_group else None,
        )

    def _started(self) -> subprocess.Popen[bytes]:
        if self.popen is None:
            raise RuntimeError(f"{self.args} was never started")
        return self.popen

    @property
    def pid(self) -> int:
        """The id of the current (or last) process."""
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        """The last process's exit code (negative: the signal that ended it); None while it runs."""
        return None if self.popen is None else self.popen.poll()

    def alive(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process if it still runs."""
        if self.alive():
            self._started().send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process exits and return its code (raises `subprocess.TimeoutExpired`)."""
        return self._started().wait(timeout)

    def kill(self) -> None:
        """SIGKILL, no clean-up (as when a machine dies), and reap the process."""
        if self.popen is not None:
            self.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def wait_or_kill(self, timeout: float) -> int | None:
        """Wait up to `timeout` for the exit: its code, or None if the process had to be killed."""
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`: the exit code, or None if it had to be killed."""
        self.send_signal(signal.SIGTERM)
        return self.wait_or_kill(timeout)

    async def terminate_async(self, timeout: float = 30) -> int | None:  # noqa: ASYNC109
        """`terminate` for async code: the wait happens in a thread, not on the event loop."""
        return await asyncio.to_thread(self.terminate, timeout)


def stop_all(children: Iterable[ChildProcess], timeout: float = 30) -> None:
    """SIGTERM every running child at once; SIGKILL those still running `timeout` seconds later."""
    running = [child for child in children if child.alive()]
    for child in running:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in running:
        child.wait_or_kill(max(0.0, deadline - time.monotonic()))


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `first`, doubling up to `cap`; a child that stayed up `stable_after` s starts over."""

    first: float = 0.5
    cap: float = 30.0
    stable_after: float = 30.0

    def delay(self, crashes: int) -> float:
        """The wait before restarting a child that has just crashed `crashes + 1` times in a row."""
        return float(min(self.cap, self.first * 2**crashes))


@dataclass
class _Slot:
    """A supervised child and its restart bookkeeping."""

    name: str
    child: ChildProcess
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None


class Supervisor:
    """Keeps named children running: any that exits is restarted with back-off until the stop."""

    def __init__(
        self,
        children: Mapping[str, ChildProcess],
        *,
        backoff: Backoff | None = None,
        poll_seconds: float = 0.2,
        stop_timeout: float = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.poll_seconds = poll_seconds
        self.stop_timeout = stop_timeout
        self.clock = clock
        self._slots = [_Slot(name, child) for name, child in children.items()]
        self._stopping = False

    @property
    def children(self) -> dict[str, ChildProcess]:
        """The supervised children by name."""
        return {slot.name: slot.child for slot in self._slots}

    def pending_restarts(self) -> dict[str, float]:
        """Children waiting out their back-off, with the seconds left before their restart."""
        now = self.clock()
        return {slot.name: slot.restart_at - now for slot in self._slots if slot.restart_at is not None}

    def start(self) -> None:
        """Start every child that has not been started yet."""
        for slot in self._slots:
            if slot.child.popen is None:
                self._launch(slot)

    def run(self) -> None:
        """Start the children, keep them running until SIGINT/SIGTERM or `request_stop`, then stop them.

        Signal handlers can only be installed from the main thread; they are restored on return.
        """
        with _calling_on_signals(self.request_stop):
            try:
                self.start()
                while not self._stopping:
                    self.check()
                    time.sleep(self.poll_seconds)
                log.info("stopping %s", ", ".join(self.children))
            finally:
                self.stop()

    def check(self) -> None:
        """One round: notice children that exited, restart those whose back-off has passed."""
        now = self.clock()
        for slot in self._slots:
            if self._stopping:
                return
            if slot.restart_at is None and slot.child.returncode is not None:
                self._schedule_restart(slot, now)
            elif slot.restart_at is not None and now >= slot.restart_at:
                self._launch(slot)
                log.info("%s restarted as pid %d", slot.name, slot.child.pid, extra=self._fields(slot))

    def request_stop(self) -> None:
        """Make `run` stop the children and return (safe to call from a signal handler)."""
        self._stopping = True

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after `stop_timeout`); nothing is restarted after."""
        self._stopping = True
        stop_all((slot.child for slot in self._slots), self.stop_timeout)

    def _launch(self, slot: _Slot) -> None:
        slot.child.start()
        slot.started_at = self.clock()
        slot.restart_at = None

    def _schedule_restart(self, slot: _Slot, now: float) -> None:
        if now - slot.started_at >= self.backoff.stable_after:
            slot.crashes = 0
        delay = self.backoff.delay(slot.crashes)
        slot.crashes += 1
        slot.restart_at = now + delay
        fields = {**self._fields(slot), "exit_code": slot.child.returncode, "delay_seconds": delay}
        log.warning(
            "%s (pid %d) exited with code %s; restarting in %.1f s",
            slot.name,
            slot.child.pid,
            slot.child.returncode,
            delay,
            extra=fields,
        )

    @staticmethod
    def _fields(slot: _Slot) -> dict[str, object]:
        return {"child": slot.name, "pid": slot.child.pid, "crashes": slot.crashes}


@contextlib.contextmanager
def _calling_on_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Call `handler` on SIGINT and SIGTERM instead of their usual action, until the block ends."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)
