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
    answer per item, in order. A failed write fails every call in it (each caller sees the exception),
    unless the exception is one of `split_on`: then each item is written again alone, so that only the
    item the write refused fails (a row the database rejects must not fail the requests written with it).
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_items: int = 1000,
        split_on: tuple[type[Exception], ...] = (),
    ) -> None:
        self._write = write
        self._max = max_items
        self._split_on = split_on
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
            await self._write_group(group)

    async def _write_group(self, group: Sequence[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._write([item for item, _ in group])
        except Exception as exc:
            if len(group) > 1 and isinstance(exc, self._split_on):
                for one in group:
                    await self._write_group([one])
                return
            for _, answer in group:  # every caller in the group gets it
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), value in zip(group, answers, strict=True):
            if not answer.done():
                answer.set_result(value)
