"""GroupCommit: callers arriving while a write runs share the next one, each getting its own answer or the error."""

from __future__ import annotations

import asyncio

from conveyor.db import GroupCommit


async def test_callers_arriving_during_a_write_share_the_next_one_and_get_their_own_answers() -> None:
    batches: list[list[int]] = []
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            await release.wait()  # the first write is slow: everyone else queues behind it
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group.submit(1))
    await first_started.wait()
    rest = [asyncio.create_task(group.submit(n)) for n in range(2, 7)]
    await asyncio.sleep(0)
    release.set()

    assert await first == 10 and await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert batches == [[1], [2, 3, 4, 5, 6]]


async def test_a_group_is_capped_and_the_rest_goes_in_the_next_write() -> None:
    batches: list[list[int]] = []

    async def write(items: list[int]) -> list[None]:
        batches.append(list(items))
        await asyncio.sleep(0)
        return [None] * len(items)

    group: GroupCommit[int, None] = GroupCommit(write, most=2)
    await asyncio.gather(*(group.submit(n) for n in range(5)))
    assert batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_write_fails_every_caller_of_its_group_and_the_next_group_still_runs() -> None:
    calls = 0

    async def write(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("database is locked")
        return items

    group: GroupCommit[str, str] = GroupCommit(write)
    outcomes = await asyncio.gather(group.submit("a"), group.submit("b"), return_exceptions=True)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    assert all("database is locked" in str(o) for o in outcomes)
    assert await group.submit("c") == "c"  # the writer is not stuck on the failure
