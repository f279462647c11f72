"""The MQTT outbox on its own: one order, exact counts, while a producer and a publisher race."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from streamprep.sinks.outbox import Outbox


@pytest.mark.parametrize("seed", range(5))
async def test_a_producer_and_a_publisher_racing_over_the_spool_keep_order_and_counts(
    tmp_path: Path, seed: int
) -> None:
    outbox = Outbox(100_000, "drop_oldest", tmp_path / "spool.sqlite3", memory_limit=8)
    await outbox.open()
    rng = random.Random(seed)
    sent: list[bytes] = []
    total = 600

    async def produce() -> None:
        for i in range(total):
            await outbox.put("t", str(i).encode(), 1, "cam")
            assert len(outbox) >= 0
            if rng.random() < 0.05:  # the broker comes and goes: memory moves to the spool and back
                await outbox.set_online(rng.random() < 0.5)
            await asyncio.sleep(0)

    async def publish() -> None:
        while len(sent) < total:
            message = await outbox.next()
            await asyncio.sleep(0)  # the publish itself
            await outbox.ack(message)
            sent.append(message.payload)
            assert len(outbox) >= 0

    await outbox.set_online(True)
    await asyncio.wait_for(asyncio.gather(produce(), publish()), 60)
    assert sent == [str(i).encode() for i in range(total)], "every message once, in order"
    assert len(outbox) == 0 and outbox.dropped == 0
    await outbox.close()


async def test_what_was_not_delivered_survives_in_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool.sqlite3"
    first = Outbox(1000, "drop_oldest", spool)
    await first.open()
    for i in range(5):
        await first.put("t", str(i).encode(), 1, "cam")
    await first.close()
    second = Outbox(1000, "drop_oldest", spool)
    await second.open()
    assert len(second) == 5
    taken = []
    for _ in range(5):
        message = await second.next()
        await second.ack(message)
        taken.append(message.payload)
    assert taken == [str(i).encode() for i in range(5)] and len(second) == 0
    await second.close()
