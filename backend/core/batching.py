"""Group commit: calls that arrive while a write is in flight go to the database together, as one
statement, each caller still getting its own answer.

No timer and no size threshold: the first call writes at once (alone, when the process is quiet), and
whatever arrives while that write is in flight becomes the next write. Under load the writes grow by
themselves; at rest nothing waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Runs `write(items)` for the items submitted while the previous write ran; `write` returns one
    answer per item, in order. A failed write fails every call in it (each caller sees the exception)."""

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_items: int = 1000) -> None:
        self._write = write
        self._max = max_items
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Write `item` with whatever else is waiting; its answer."""
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
            try:
                answers = await self._write([item for item, _ in group])
            except Exception as exc:  # every caller in the group gets it
                for _, answer in group:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), value in zip(group, answers, strict=True):
                if not answer.done():
                    answer.set_result(value)
