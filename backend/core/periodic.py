"""A duty repeated in the background while a block runs (a worker's registry beat, its duties)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


async def _repeat(
    name: str, duty: Callable[[], Awaitable[object]], every_s: float, jitter: float, wait_first: bool
) -> None:
    if wait_first:
        await asyncio.sleep(every_s * random.uniform(1 - jitter, 1 + jitter))
    while True:
        try:
            await duty()
        except Exception as exc:  # one failed round is logged; the next one runs as usual
            log.warning("%s failed", name, extra={"error": type(exc).__name__})
        await asyncio.sleep(every_s * random.uniform(1 - jitter, 1 + jitter))


@contextlib.asynccontextmanager
async def repeating(
    name: str,
    duty: Callable[[], Awaitable[object]],
    every_s: float,
    jitter: float = 0.0,
    wait_first: bool = False,
) -> AsyncIterator[None]:
    """Run `duty` now (or, with `wait_first`, after one period) and then every `every_s` seconds
    (± `jitter` of it) until the block ends."""
    task = asyncio.create_task(_repeat(name, duty, every_s, jitter, wait_first), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
