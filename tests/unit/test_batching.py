"""GroupCommit: calls made while a write is in flight share the next write; each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from backend.core.batching import GroupCommit


async def test_calls_during_a_write_share_the_next_one() -> None:
    writes: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        writes.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    group = GroupCommit(write)

    async def later(i: int) -> int:
        await asyncio.sleep(0.002)  # arrives while the first write is in flight
        return await group.submit(i)

    answers = await asyncio.gather(group.submit(0), group.submit(1), *(later(i) for i in range(2, 5)))
    assert answers == [0, 10, 20, 30, 40]
    assert writes == [[0, 1], [2, 3, 4]]
    assert await group.submit(7) == 70 and writes[-1] == [7]  # at rest, nothing waits


async def test_a_failed_write_fails_its_callers_only() -> None:
    async def write(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        if 2 in items:
            raise ValueError("no")
        return list(items)

    group = GroupCommit(write, max_items=2)
    results = await asyncio.gather(*(group.submit(i) for i in range(5)), return_exceptions=True)
    assert results[:2] == [0, 1]
    assert isinstance(results[2], ValueError) and isinstance(results[3], ValueError)  # written together
    assert results[4:] == [4]


async def test_a_refused_item_fails_alone_when_the_group_splits_on_its_error() -> None:
    writes: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        writes.append(list(items))
        await asyncio.sleep(0)
        if 2 in items:
            raise ValueError("no")
        if 9 in items:
            raise KeyError("outage")  # not one of split_on: the whole group fails
        return list(items)

    group = GroupCommit(write, max_items=4, split_on=(ValueError,))
    results = await asyncio.gather(*(group.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 1] and isinstance(results[2], ValueError) and results[3] == 3
    assert writes == [[0, 1, 2, 3], [0], [1], [2], [3]]
    results = await asyncio.gather(group.submit(8), group.submit(9), return_exceptions=True)
    assert all(isinstance(r, KeyError) for r in results)


async def test_groups_are_bounded() -> None:
    sizes: list[int] = []

    async def write(items: Sequence[int]) -> list[None]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return [None] * len(items)

    group = GroupCommit(write, max_items=3)
    await asyncio.gather(*(group.submit(i) for i in range(8)))
    assert sizes == [3, 3, 2]
    with pytest.raises(ZeroDivisionError):

        async def broken(items: Sequence[int]) -> list[None]:
            raise ZeroDivisionError

        await GroupCommit(broken).submit(1)
