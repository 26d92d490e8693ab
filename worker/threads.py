"""Run blocking work in a thread, and stop it promptly when the job is cancelled or times out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The thread saw the stop flag and gave up."""


async def run_stoppable(fn: Callable[[threading.Event], T]) -> T:
    """Run `fn(stop)` in the default executor; on cancellation set `stop`, wait for it, re-raise."""
    stop = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(None, fn, stop)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([future])
        raise
