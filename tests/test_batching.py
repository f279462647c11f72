import asyncio
import contextlib
import time

from streamprep.flow.queues import DropPolicy
from streamprep.run.batching import Batcher


async def test_lone_item_is_not_held_longer_than_max_wait() -> None:
    batcher: Batcher[int] = Batcher(max_size=8, max_wait=0.05)
    q = batcher.add_queue(4, DropPolicy.BLOCK)
    batcher.add_queue(4, DropPolicy.BLOCK)  # a second source that has nothing yet
    await q.put(1)
    t0 = time.monotonic()
    batch = await asyncio.wait_for(batcher.next_batch(), 5)
    waited = time.monotonic() - t0
    assert batch == [1]
    assert 0.04 <= waited < 1.0


async def test_no_waiting_once_every_source_has_given_its_frame() -> None:
    batcher: Batcher[str] = Batcher(max_size=8, max_wait=10.0)
    cams = [batcher.add_queue(1, DropPolicy.DROP_OLDEST) for _ in range(3)]
    for name, q in zip("abc", cams, strict=True):
        await q.put(name)
    t0 = time.monotonic()
    batch = await asyncio.wait_for(batcher.next_batch(), 5)
    assert sorted(batch or []) == ["a", "b", "c"]
    assert time.monotonic() - t0 < 1.0, "a batch that cannot grow is not held for max_wait"


async def test_batch_fills_to_max_across_sources_round_robin() -> None:
    batcher: Batcher[str] = Batcher(max_size=4, max_wait=10.0)
    queues = [batcher.add_queue(8, DropPolicy.BLOCK) for _ in range(3)]
    for name, q in zip("abc", queues, strict=True):
        for i in range(3):
            await q.put(f"{name}{i}")
    t0 = time.monotonic()
    first = await asyncio.wait_for(batcher.next_batch(), 5)
    assert time.monotonic() - t0 < 1.0, "a full batch does not wait for max_wait"
    assert first == ["a0", "b0", "c0", "a1"]
    second = await batcher.next_batch()
    assert second == ["b1", "c1", "a2", "b2"]


async def test_no_source_is_starved() -> None:
    batcher: Batcher[str] = Batcher(max_size=2, max_wait=0.0)
    busy = batcher.add_queue(100, DropPolicy.BLOCK)
    quiet = batcher.add_queue(100, DropPolicy.BLOCK)
    for i in range(50):
        await busy.put(f"busy{i}")
    await quiet.put("quiet0")
    batch = await batcher.next_batch()
    assert batch is not None and "quiet0" in batch


async def test_ends_when_sealed_and_all_queues_drained() -> None:
    batcher: Batcher[int] = Batcher(max_size=3, max_wait=0.01)
    a = batcher.add_queue(4, DropPolicy.BLOCK)
    b = batcher.add_queue(4, DropPolicy.BLOCK)
    batcher.seal()
    await a.put(1)
    a.close()
    await b.put(2)
    await b.put(3)
    b.close()
    got: list[int] = []
    while (batch := await asyncio.wait_for(batcher.next_batch(), 5)) is not None:
        got.extend(batch)
    assert sorted(got) == [1, 2, 3]


async def test_items_arriving_during_the_wait_join_the_batch() -> None:
    batcher: Batcher[int] = Batcher(max_size=3, max_wait=2.0)
    q = batcher.add_queue(4, DropPolicy.BLOCK)
    batcher.add_queue(4, DropPolicy.BLOCK)  # another source: the batch keeps waiting for it
    await q.put(1)

    async def later() -> None:
        await asyncio.sleep(0.01)
        await q.put(2)
        await q.put(3)

    feeder = asyncio.create_task(later())
    batch = await asyncio.wait_for(batcher.next_batch(), 5)
    await feeder
    assert batch == [1, 2, 3]


async def test_a_batch_cancelled_while_gathering_gives_its_items_back_for_counting() -> None:
    batcher: Batcher[str] = Batcher(max_size=4, max_wait=10.0)
    a, b = batcher.add_queue(4, DropPolicy.BLOCK), batcher.add_queue(4, DropPolicy.BLOCK)
    await a.put("a0")
    await a.put("a1")
    gathering = asyncio.create_task(batcher.next_batch())
    while len(a):  # the batcher takes a's frames and waits for b's (or max_wait)
        await asyncio.sleep(0)
    gathering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gathering
    assert batcher.take_gathering() == ["a0", "a1"], "items taken from their queues are not lost"
    assert batcher.take_gathering() == []
    a.close()
    await b.put("b0")
    assert await asyncio.wait_for(batcher.next_batch(), 5) == ["b0"]
