"""Run blocking work in a thread, and stop it promptly when the job is cancelled or times out.

Each run gets its own thread rather than a slot in the loop's default executor: that executor is
small (cpu + 4 threads) and also resolves host names for new database and Redis connections, so a
few long reports in it would stall every heartbeat that needs a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The thread saw the stop flag and gave up."""


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


async def run_stoppable(fn: Callable[[threading.Event], T], name: str = "job-thread") -> T:
    """Run `fn(stop)` in a new thread; on cancellation set `stop`, wait for the thread, re-raise."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()

    def target() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn(stop)
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(_settle, done, result, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([done])
        if not done.cancelled():
            done.exception()  # consumed here: the cancellation is what propagates
        raise
