import asyncio

import pytest

from streamprep.flow.queues import BoundedQueue, DropPolicy, QueueClosed


async def test_drop_oldest_keeps_newest_and_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, DropPolicy.DROP_OLDEST)
    for i in range(5):
        assert await q.put(i)
    assert q.dropped == 3
    assert [q.get_nowait(), q.get_nowait(), q.get_nowait()] == [3, 4, None]


async def test_drop_newest_refuses_and_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, DropPolicy.DROP_NEWEST)
    results = [await q.put(i) for i in range(4)]
    assert results == [True, True, False, False]
    assert q.dropped == 2
    assert [q.get_nowait(), q.get_nowait()] == [0, 1]


async def test_block_waits_for_room_and_loses_nothing() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, DropPolicy.BLOCK)
    got: list[int] = []

    async def consume() -> None:
        while (item := await q.get()) is not None:
            got.append(item)

    consumer = asyncio.create_task(consume())
    for i in range(50):
        await q.put(i)
        assert len(q) <= 1
    q.close()
    await asyncio.wait_for(consumer, 5)
    assert got == list(range(50))
    assert q.dropped == 0


async def test_close_drains_then_ends() -> None:
    q: BoundedQueue[int] = BoundedQueue(3)
    await q.put(1)
    q.close()
    assert await q.get() == 1
    assert await q.get() is None
    assert q.exhausted
    with pytest.raises(QueueClosed):
        await q.put(2)


async def test_blocked_put_is_released_by_close() -> None:
    q: BoundedQueue[int] = BoundedQueue(1)
    await q.put(1)
    blocked = asyncio.create_task(q.put(2))
    await asyncio.sleep(0)
    assert not blocked.done()
    q.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(blocked, 5)
